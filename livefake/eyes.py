"""Eyes: the eyeball under the lids, drawn apart from the warp.

The warp opens and shuts the lids, but it hardly moves an iris (on talking.mp4 the output's gaze followed
the driver's at a correlation of 0.48-0.56), and an eye it opens wider stretches the iris into an upright
oval. So each eye of the photo is split, once, into two layers:

- the eyeball with its iris painted out: the white filled in row by row from either side of the iris;
- the iris alone, as a small patch with a round alpha; what the lids hide of it is filled from what
  shows at the same distance from its centre (an iris is about the same all the way round).

Every frame each iris is laid into the eyeball layer where the warp will show it at the target's iris
(the retargeted gaze), drawn through the warp's local affine there, inverted, so that it comes out
round and at the head's scale however wide the eye opens; the photo's own lids cut it, and the warp
lays those onto the target's. In a blink the lids are slid over what the smoothed warp leaves open
(:mod:`livefake.openings`).
The result is the source crop the generator warps, so the generator is unchanged and the work is a few
small CPU resamplings (an iris is a few pixels across in a 256 crop). An eye the photo shows (nearly)
shut, or whose iris it hides, keeps its pixels, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.mouth import fit_affine
from livefake.openings import SlidingOpening, SourcePatch
from livefake.source import square_view
from livefake.warp import field_affine

EYES = ((fr.RIGHT_EYE, fr.RIGHT_IRIS, fr.RIGHT_EYE_LID_PAIRS, fr.RIGHT_EYE_CORNERS),
        (fr.LEFT_EYE, fr.LEFT_IRIS, fr.LEFT_EYE_LID_PAIRS, fr.LEFT_EYE_CORNERS))
IRIS_SPAN = 1.8  # the iris patch reaches this many iris radii from the centre, each way
# A 256 crop's pixels beyond the iris's landmark radius that go with it (its rim, a blended pixel), scaled
# with the crop: the rim is as soft at any resolution.
_RIM = 0.75
_RINGS = 6  # the hidden part of the iris is filled ring by ring from what shows of each ring
_MIN_LID_GAP = 0.12  # of the eye's width: an eye open less than this in the photo keeps its warped pixels
_MIN_IRIS_SHOWN = 0.25  # of the iris disc, or the eye keeps its warped pixels
# Luma levels by which the white must be brighter than the iris, or the eye keeps its warped pixels: behind
# dark glasses or in deep shadow there is no iris to move (the shared photos and the clips' first frames:
# 12 to 137).
_MIN_WHITE_CONTRAST = 8.0
_LUMA = np.array([0.299, 0.587, 0.114])


def iris_circle(points: np.ndarray, iris: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Centre (2,) and radius of an iris from its five landmarks (centre first, then four on its rim)."""
    centre = points[iris[0], :2].astype(np.float64)
    radius = float(np.linalg.norm(points[list(iris[1:]), :2] - centre, axis=1).mean())
    return centre, radius


def _inside(polygon: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: the pixels whose centres lie inside ``polygon`` ((N, 2+) pixels)."""
    mask = np.zeros((size, size), np.uint8)
    shift = 4
    cv2.fillPoly(mask, [np.round(polygon[:, :2] * (1 << shift)).astype(np.int32)], 1, shift=shift)
    return mask.astype(bool)


def complete_iris(patch: np.ndarray, visible: np.ndarray, radius_px: float, edge_px: float) -> np.ndarray | None:
    """(P, P, 4) uint8 RGBA iris from a (P, P, 3) patch centred on it and the (P, P) bool pixels of it the
    lids leave visible: opaque out to ``radius_px``, fading over ``edge_px`` beyond (patch pixels); what
    the lids hide is filled ring by ring from what shows of each ring. ``None`` when too little shows."""
    p = patch.shape[0]
    centres = np.arange(p) - p / 2.0  # the iris centre sits at p / 2, pixel centres at integers
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    d = np.hypot(xx, yy) / radius_px
    disc = d < 1.0
    shown = visible & disc
    if shown.sum() < _MIN_IRIS_SHOWN * disc.sum():
        return None
    out = patch.astype(np.float32)
    ring = np.minimum((d * _RINGS).astype(int), _RINGS)
    overall = out[shown].mean(axis=0)
    hidden = ~visible & (d < 1.0 + edge_px / radius_px)
    for k in range(_RINGS + 1):
        seen = shown & (ring == k) if k < _RINGS else visible & (ring == k)
        colour = out[seen].mean(axis=0) if seen.sum() >= 3 else overall
        out[hidden & (ring == k)] = colour
    alpha = np.clip(1.0 - (d - 1.0) * radius_px / edge_px, 0.0, 1.0)
    rgba = np.concatenate([out, 255.0 * alpha[..., None]], axis=-1)
    return np.clip(rgba + 0.5, 0, 255).astype(np.uint8)


def white_and_iris(crop: np.ndarray, inside: np.ndarray, centre: np.ndarray,
                   reach: float) -> tuple[np.ndarray, float] | None:
    """The colour (3,) of the white of an eye in ``crop`` ((S, S, 3) uint8): the brighter half of its opening
    ``inside`` ((S, S) bool) beyond ``reach`` pixels of the iris ``centre`` (the rest: lashes, shadow,
    corners); and the iris's mean luma (within ``reach``). None where hardly any white or iris shows."""
    ys, xs = np.nonzero(inside)
    colours = crop[ys, xs].astype(np.float64)
    luma = colours @ _LUMA
    near = np.hypot(xs - centre[0], ys - centre[1]) <= reach
    if (~near).sum() < 4 or not near.any():
        return None
    white = luma[~near] >= np.median(luma[~near])
    return colours[~near][white].mean(axis=0), float(luma[near].mean())


def paint_out_iris(crop: np.ndarray, inside: np.ndarray, centre: np.ndarray, reach: float,
                   white: np.ndarray) -> None:
    """Replace, in place, what lies within ``reach`` pixels of ``centre`` (the iris, its rim and a pixel
    blended with it) inside the eye's opening ``inside`` ((S, S) bool) of ``crop`` ((S, S, 3) uint8) by
    the white of the eye: each row by the line between the white just left and just right of it, a row
    with none beside it by the ``white`` colour ((3,), :func:`white_and_iris`). (The two pixels nearest,
    at any resolution: at a close-up's, a wider band took in the lids' shadow and left the fill grey.)"""
    size = crop.shape[0]
    ys, xs = np.nonzero(inside)
    near = np.hypot(xs - centre[0], ys - centre[1]) <= reach
    fill = {}
    for y in np.unique(ys[near]):
        cols = xs[near & (ys == y)]
        xl, xr = int(cols.min()), int(cols.max())
        left = [x for x in (xl - 1, xl - 2) if x >= 0 and inside[y, x]]
        right = [x for x in (xr + 1, xr + 2) if x < size and inside[y, x]]
        a = crop[y, left].mean(axis=0) if left else white
        b = crop[y, right].mean(axis=0) if right else white
        t = ((np.arange(xl, xr + 1) - xl + 1) / (xr - xl + 2))[:, None]
        fill[y] = (xl, (1 - t) * a + t * b)
    for y, (xl, row) in fill.items():
        cols = np.arange(xl, xl + len(row))
        keep = inside[y, cols] & (np.hypot(cols - centre[0], y - centre[1]) <= reach)
        crop[y, xl:xl + len(row)][keep] = np.clip(row[keep] + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CoveredEye:
    """One eye the layers cover: its index (0 right, 1 left), iris patch ((P, P, 4) float32 RGBA in [0, 1],
    straight alpha) and iris landmarks in the patch's pixels, the opening's bounding window in the crop (top,
    left) and the opening inside it ((h, w) float32, 0 or 1), its lids (a :class:`SlidingOpening`) and the
    window (top, left, bottom, right) a frame may redraw: the opening's and the lids' together."""

    index: int
    iris: np.ndarray
    iris_px: np.ndarray
    top: int
    left: int
    opening: np.ndarray
    lids: SlidingOpening
    window: tuple[int, int, int, int]


class EyeLayers:
    """The photo's eyes split into eyeball and iris layers (see the module's doc), for one source crop.

    ``crop``: (S, S, 3) uint8; ``points``: (478, 3) landmarks in crop pixels; ``patch_size``: side of each
    iris patch. ``eyeball``: (S, S, 3) uint8, the crop with the irises painted out (``eyeball_chw``: the
    same, (3, S, S) float32 in [0, 1]); ``eyes``: the eyes the layers cover; ``covered``: whether they cover
    the right and the left eye.
    """

    def __init__(self, crop: np.ndarray, points: np.ndarray, patch_size: int = 32) -> None:
        size = crop.shape[0]
        self.size = size
        unit = size / 256.0  # this crop's pixels per a 256 crop's
        self.eyeball = crop.copy()
        self.eyes: list[CoveredEye] = []
        for k, (contour, iris, pairs, corners) in enumerate(EYES):
            centre, radius = iris_circle(points, iris)
            opening = _inside(points[list(contour)], size)
            if radius < 1.0 or fr.lid_gap_ratio(points, pairs, corners) < _MIN_LID_GAP or not opening.any():
                continue
            view = square_view(centre, 0.0, 2.0 * IRIS_SPAN * radius, patch_size)
            # What shows of the iris: inside the lids' contour, drawn at the patch's finer scale.
            visible = _inside(view.apply(points[list(contour), :2]), patch_size)
            reach = radius + _RIM * unit
            rgba = complete_iris(view.cut(crop), visible, reach * view.scale, unit * view.scale)
            seen = white_and_iris(crop, opening, centre, reach)
            if rgba is None or seen is None or seen[0] @ _LUMA - seen[1] < _MIN_WHITE_CONTRAST:
                continue
            paint_out_iris(self.eyeball, opening, centre, reach, seen[0])
            lids = SlidingOpening.across(pairs, corners, points, size)
            ys, xs = np.nonzero(opening)
            y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            window = (min(y0, lids.top), min(x0, lids.left), max(y1, lids.bottom), max(x1, lids.right))
            self.eyes.append(CoveredEye(k, rgba.astype(np.float32) / 255.0, view.apply(points[list(iris), :2]),
                                        y0, x0, opening[y0:y1, x0:x1].astype(np.float32), lids, window))
        self.covered = (any(e.index == 0 for e in self.eyes), any(e.index == 1 for e in self.eyes))
        self.eyeball_chw = np.ascontiguousarray(self.eyeball.transpose(2, 0, 1), dtype=np.float32) / 255.0
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (what placed it, the source it gave)

    def place(self, target: np.ndarray, field: np.ndarray) -> np.ndarray:
        """The source crop for this frame, (3, S, S) float32 in [0, 1]: the eyeball layer with each iris laid
        in where the warp ``field`` ((G, G, 2), :class:`~livefake.warp.WarpSolver`) will show it at the
        target's iris ((478, 3) ``target`` landmarks, crop pixels), round and at the target's size.

        The iris is drawn in the source's geometry: through the warp's local affine at the target iris,
        inverted, so that warped it comes out as the target asks. It is cut by the photo's own lids, which
        the warp lays onto the target's. Where the warp leaves an eye more open than the target (a blink
        asks it to squeeze the opening to a slit, which a smoothed spline does only in part), the lids are
        slid over the opening by what is missing.

        While nothing changes the same array comes back (a GPU backend then does not upload it again). An
        array once returned is never written to again, so another thread may read it while this one goes
        on to the next frame."""
        plans = self._plans(target, field)
        key = np.array([np.concatenate([m.ravel(), up, down]) for _, m, up, down in plans])
        if self._last is not None and self._last[0].shape == key.shape and np.allclose(self._last[0], key, atol=1e-3):
            return self._last[1]
        out = self.eyeball_chw.copy()
        for patch in self._edits(plans):
            patch.lay_into(out)
        self._last = (key, out)
        return out

    def edits(self, target: np.ndarray, field: np.ndarray) -> list[SourcePatch]:
        """What :meth:`place` changes in the eyeball layer for this frame, window by window (one per eye)."""
        return self._edits(self._plans(target, field))

    def _plans(self, target: np.ndarray, field: np.ndarray) -> list[tuple[CoveredEye, np.ndarray, np.ndarray,
                                                                          np.ndarray]]:
        """Per eye: the eye, its iris map (:meth:`_iris_map`) and its lids' shortfall above and below."""
        return [(eye, self._iris_map(eye, target, field), *eye.lids.shortfall(target, field)) for eye in self.eyes]

    def _edits(self, plans: list[tuple[CoveredEye, np.ndarray, np.ndarray, np.ndarray]]) -> list[SourcePatch]:
        patches = []
        for eye, m, up, down in plans:
            top, left, bottom, right = eye.window
            pixels = self.eyeball_chw[:, top:bottom, left:right].copy()
            h, w = eye.opening.shape
            m = m.copy()
            m[:, 2] += m[:, :2] @ np.array([eye.left, eye.top], np.float64)  # opening pixels -> crop pixels first
            rgba = cv2.warpAffine(eye.iris, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            opening = pixels[:, eye.top - top:eye.top - top + h, eye.left - left:eye.left - left + w]
            opening += (rgba[..., 3] * eye.opening)[None] * (rgba[..., :3].transpose(2, 0, 1) - opening)
            if up.any() or down.any():
                lids = eye.lids
                lidded = pixels[:, lids.top - top:lids.bottom - top, lids.left - left:lids.right - left]
                lidded[:] = lids.slide(lidded, up, down)
            patches.append(SourcePatch(top, left, pixels))
        return patches

    def _iris_map(self, eye: CoveredEye, target: np.ndarray, field: np.ndarray) -> np.ndarray:
        """(2, 3) affine from source-crop pixels to the eye's iris patch pixels for this frame."""
        iris = EYES[eye.index][1]
        centre = target[iris[0], :2]
        source_centre, jacobian = field_affine(field, self.size, centre)
        # Source pixel s shows target pixel centre + J^-1 (s - source centre): chained to the patch. (The fold
        # guard keeps J's determinant positive; a degenerate one falls back to a plain shift.)
        back = np.linalg.inv(jacobian) if np.linalg.det(jacobian) > 1e-6 else np.eye(2)
        to_patch = fit_affine(target[list(iris), :2], eye.iris_px)  # target pixels -> patch pixels
        offset = to_patch[:, :2] @ (centre - back @ source_centre) + to_patch[:, 2]
        return np.hstack([to_patch[:, :2] @ back, offset[:, None]])
