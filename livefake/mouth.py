"""Mouth interior: where the target opens its mouth wider than the source photo, the driver's own mouth
interior (teeth, tongue, shadow) is cut out, fitted into the target's inner-lip contour and recoloured
to the source's lighting, as in "Bringing Portraits to Life" (Averbuch-Elor et al. 2017).

This module holds the CPU side (polygon masks, the patch cut from the driver, the affine that lays it
into the crop, the colour statistics of the skin around the driver's lips); the generator does the
resampling and colour transfer as tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.source import CropTransform, square_view
from livefake.warp import to_unit

_INNER_WITH_CORNERS = list(fr.LIPS_INNER)
_NO_OUTLINE = np.zeros((0, 2), np.float32)


@dataclass(frozen=True)
class MouthInputs:
    """Per-frame mouth inputs of the generator.

    ``patch``: (M, M, 3) uint8 RGB around the driver's mouth (or the built-in interior);
    ``affine``: (2, 3) float32 from target-crop [-1, 1] coords to patch [-1, 1] coords;
    ``mask``: (S, S) float32 in [0, 1], the target opening times how far it exceeds the source's;
    ``skin_stats``: (2, 3) float32, LAB mean and standard deviation of the skin around the driver's lips
    (:meth:`MouthGeometry.skin_stats`; the lighting the patch was seen in);
    ``recolor``: 1.0 to match the driver's lighting to the source's, 0.0 to use the patch as it is;
    ``outline``: (20, 2) float32, the target opening's inner lips in crop pixels (empty where the mouth is no
    wider than the source's) and ``opening`` how far it exceeds the source's, 0 to 1: the ``mask`` they draw,
    for the full-resolution paste to draw at the photo's resolution.
    """

    patch: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    skin_stats: np.ndarray
    recolor: float
    outline: np.ndarray
    opening: float


# Sides of the views cut around a mouth, in mouth widths (corner to corner): the interior's patch holds the
# opening and a little lip (at 2.2, where it also held the skin around the lips, a 64 px patch drew an
# 86 px wide driver mouth at 29 px, below the 33-45 px of the photos' mouths in a 256 crop, and the tongue
# read as lip); the skin's view holds the ring of skin around the lips, at a low resolution (its mean and
# spread are all that is kept).
INTERIOR_VIEW = 1.5
# Side of the driver's mouth patch, for any crop size: about the driver's own resolution (1.5 mouth widths
# of a face filling a 480-512 frame span 93-164 px on the shared clips). At 64 (a quarter of a 256 crop) the
# patch held the driver's mouth 1.5-2.5 times smaller, too coarse for a speaking mouth's thin gap, averaged or
# sampled by points alike: talking.mp4's rows read 0.005-0.009 lower in mouth correlation (up to 0.014 on
# photos the benchmark does not use). The generator's recolouring of the larger patch costs ~0.9 ms more.
PATCH_SIZE = 128
SKIN_VIEW = 2.2
SKIN_VIEW_SIZE = 32
NEUTRAL_STATS = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)  # for an interior not recoloured


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares (2, 3) affine with ``dst ≈ A @ [src, 1]`` for (N, 2) point sets."""
    a = np.c_[src, np.ones(len(src))]
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T.astype(np.float32)


def polygon_mask(points_px: np.ndarray, size: int, blur_px: float) -> np.ndarray:
    """(size, size) float32 mask of the filled polygon (anti-aliased, then softened by ``blur_px``)."""
    canvas = np.zeros((size, size), np.uint8)
    shift = 4
    pts = np.round((points_px[:, :2]) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    mask = canvas.astype(np.float32) / 255.0
    if blur_px > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur_px)
    return mask


def builtin_interior(size: int) -> np.ndarray:
    """A drawn mouth interior for when no driver video is at hand (the demo): dark cavity, upper teeth,
    tongue. (size, size, 3) uint8; the opening spans x in [-0.6, 0.6], y in [-0.35, 0.35] of the patch."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0  # grid_sample's pixel centres
    y, x = np.meshgrid(centres, centres, indexing="ij")
    cavity = np.clip(1.0 - (x / 0.7) ** 2 - (y / 0.45) ** 2, 0, 1)
    img = np.stack([70 - 45 * cavity, 22 - 14 * cavity, 28 - 18 * cavity], -1)
    teeth = (1 / (1 + np.exp((y + 0.12) * 40))) * (1 / (1 + np.exp((np.abs(x) - 0.42) * 30)))
    tongue = (1 / (1 + np.exp(-(y - 0.22) * 30))) * np.clip(1 - (x / 0.5) ** 2, 0, 1)
    img = img * (1 - teeth[..., None]) + np.array([225, 220, 208]) * teeth[..., None]
    img = img * (1 - tongue[..., None]) + np.array([160, 70, 78]) * tongue[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _builtin_inner_lips() -> np.ndarray:
    """Inner-lip contour of :func:`builtin_interior`'s opening, in the order of ``LIPS_INNER``."""
    n = len(_INNER_WITH_CORNERS)  # corner, 9 upper, corner, 9 lower
    angles = np.linspace(np.pi, -np.pi, n, endpoint=False)
    return np.stack([0.6 * np.cos(angles), -0.35 * np.sin(angles)], axis=1)


def fill_open_mouth(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``crop`` with its open mouth (inside the inner lips) filled from the lips around it (OpenCV's
    Telea inpainting). A photo whose wide-open mouth the retargeter shuts is warped from this: the coarse
    field cannot squeeze the opening to a line, and what is left of it then shows lip, not a dark band."""
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[_INNER_WITH_CORNERS, :2]).astype(np.int32)], 255)
    # One pixel past the inner lips at 256, as far at any size: the dark rim along a lip's inner edge goes too.
    reach = max(1, round(crop.shape[0] / 256))
    mask = cv2.dilate(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    return cv2.inpaint(crop, mask, max(3.0, 0.02 * crop.shape[0]), cv2.INPAINT_TELEA)


# How much more the lips of a photo whose open mouth is shut differ in colour (LAB a*, b*) from the skin around
# them. Lips stretched around an O or a yawn are drawn thin and pale; shut, they were warped into a band
# hardly apart from the skin, MediaPipe found no lips in it and read small openings as wide (o_mouth.jpg with
# talking.mp4: 0.1 of the eye distance read as 0.17-0.19). Doubled, they read as relaxed lips do (that row's
# mouth correlation 0.853 -> 0.887; mouth_open.jpg, not in the benchmark, +0.017 on the same clip).
SHUT_LIP_CHROMA = 2.0


def shut_mouth_crop(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The crop a photo whose wide-open mouth the retargeter shuts is warped from: the opening filled
    (:func:`fill_open_mouth`) and the lips' colour deepened by :data:`SHUT_LIP_CHROMA` against the skin
    around them. ``crop`` (S, S, 3) uint8, ``points`` its (478, 2+) landmarks in crop pixels."""
    filled = fill_open_mouth(crop, points)
    size = crop.shape[0]
    lips = polygon_mask(points[list(fr.LIPS_OUTER)], size, size / 256)
    skin = MouthGeometry.skin_stats(points, filled)[0]
    lab = cv2.cvtColor(filled.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab[..., 1:] += (SHUT_LIP_CHROMA - 1.0) * lips[..., None] * (lab[..., 1:] - skin[1:])
    deepened = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    on_lips = lips > 0  # elsewhere the pixels stay as they were, not as the LAB round trip returns them
    filled[on_lips] = deepened[on_lips]
    return filled


def opening_aspect(inner: np.ndarray) -> float:
    """Height over width of a mouth opening, from its inner-lip contour ((20, 2+) in ``LIPS_INNER`` order):
    the middle pairs' mean gap over the corners' distance."""
    upper, lower = inner[2:9, :2], inner[18:11:-1, :2]
    width = float(np.linalg.norm(inner[10, :2] - inner[0, :2]))
    return float(np.linalg.norm(lower - upper, axis=1).mean()) / max(width, 1e-6)


STRETCH_KEEP = 0.35  # of the driver's opening, at each lip, shown at its own scale when it is stretched


def stretch_opening(patch: np.ndarray, inner_px: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The driver's mouth patch with its opening made ``factor`` times taller, and its inner lips there.

    A target opening taller for its width than the driver's would otherwise stretch the whole interior:
    teeth and tongue drawn half again their height, a tongue that reads as lip (MediaPipe, reading the
    output, placed the lower lip above the target's the wider the target opened). Here the upper lip stays,
    the lower lip and all below it move down, the band of the opening along each lip (teeth, tongue)
    keeps its own scale and the middle of the cavity takes the stretch, as it does when a jaw drops.
    ``patch`` (M, M, 3) is cut square to the eye line, so "down" is +y; ``inner_px`` (20, 2) in patch
    pixels, ``LIPS_INNER`` order (corner, upper lip, corner, lower lip). Returns the patch and its inner
    lips."""
    factor = float(np.clip(factor, 1.0, 6.0))
    if factor <= 1.01:
        return patch, inner_px
    m = patch.shape[0]
    upper = inner_px[:11]  # corner to corner along the upper lip
    lower = inner_px[[10, *range(11, 20), 0]]  # the same corners, the lower lip between them
    xs = np.arange(m, dtype=np.float32)
    ou, ol = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    y_up = np.interp(xs, upper[ou, 0], upper[ou, 1])
    y_low = np.interp(xs, lower[ol, 0], lower[ol, 1])
    gap = np.maximum(y_low - y_up, 0.0)  # 0 beyond the corners, where both lips end at the corner's height
    new_gap = factor * gap
    y = np.arange(m, dtype=np.float32)[:, None]
    v = (y - y_up) / np.maximum(new_gap, 1e-6)  # place across the new opening
    keep = STRETCH_KEEP
    top, bottom = factor * v, 1.0 - factor * (1.0 - v)
    middle = keep + (v - keep / factor) * (1.0 - 2 * keep) / (1.0 - 2 * keep / factor)
    u = np.maximum(np.minimum(top, middle), bottom)
    src_y = np.where(y < y_up, y, np.where(v > 1.0, y - (new_gap - gap), y_up + u * gap)).astype(np.float32)
    map_x = np.broadcast_to(xs[None, :], (m, m)).astype(np.float32)
    stretched = cv2.remap(patch, map_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = inner_px.copy()
    moved[11:20, 1] += (factor - 1.0) * np.interp(inner_px[11:20, 0], xs, gap)
    return stretched, moved


class MouthGeometry:
    """Builds :class:`MouthInputs` for one source. ``patch_size``: side of the driver patch."""

    def __init__(self, source_points: np.ndarray, crop_size: int, patch_size: int = PATCH_SIZE,
                 shut: bool = False) -> None:
        self.crop_size = crop_size
        self.patch_size = patch_size
        # ``shut``: the photo's open mouth is filled (shut_mouth_crop), so any opening needs an interior.
        self.source_gap = 0.0 if shut else float(fr.inner_lip_gaps(source_points).mean())
        self.iod = fr.interocular(source_points)
        self._builtin = builtin_interior(patch_size)
        self._builtin_lips = _builtin_inner_lips()
        self._zero_mask = np.zeros((crop_size, crop_size), np.float32)
        self._last_driver: MouthInputs | None = None

    def opening(self, target: np.ndarray) -> float:
        """0..1: how much wider the target's mouth is than the source's (1 at 6 % of the eye distance)."""
        excess = (float(fr.inner_lip_gaps(target).mean()) - self.source_gap) / (0.06 * self.iod)
        x = float(np.clip(excess, 0.0, 1.0))
        return x * x * (3 - 2 * x)

    def inputs(
        self, target: np.ndarray, driver_points: np.ndarray | None, driver_rgb: np.ndarray | None
    ) -> MouthInputs:
        """Mouth inputs for target landmarks ``target`` ((478, 3) crop px), taking the interior from the
        driver's frame ``driver_rgb`` at ``driver_points`` (that frame's landmarks, its pixels) when both
        are given, else the last one seen or the built-in interior."""
        alpha = self.opening(target)
        if alpha <= 0.0:
            patch = self._last_driver.patch if self._last_driver else self._builtin
            return MouthInputs(patch, np.eye(2, 3, dtype=np.float32), self._zero_mask, NEUTRAL_STATS, 0.0,
                               _NO_OUTLINE, 0.0)
        blur = 0.6 * self.crop_size / 256
        outline = target[_INNER_WITH_CORNERS, :2].astype(np.float32)
        mask = polygon_mask(outline, self.crop_size, blur) * alpha
        tgt_unit = to_unit(target[_INNER_WITH_CORNERS], self.crop_size)
        if driver_points is not None and driver_rgb is not None:
            patch, lips_px = self.cut_patch(driver_points, driver_rgb)
            taller = opening_aspect(target[_INNER_WITH_CORNERS]) / max(opening_aspect(lips_px), 1e-6)  # shut: 0
            patch, lips_px = stretch_opening(patch, lips_px, taller)
            affine = fit_affine(tgt_unit, to_unit(lips_px, self.patch_size))
            self._last_driver = MouthInputs(patch, affine, mask, self.skin_stats(driver_points, driver_rgb), 1.0,
                                            outline, alpha)
            return self._last_driver
        if self._last_driver is not None:
            last = self._last_driver
            return MouthInputs(last.patch, last.affine, mask, last.skin_stats, last.recolor, outline, alpha)
        affine = fit_affine(tgt_unit, self._builtin_lips)
        return MouthInputs(self._builtin, affine, mask, NEUTRAL_STATS, 0.0, outline, alpha)

    def cut_patch(self, points: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (M, M, 3) patch around a face's mouth ((478, 2+) ``points`` in ``rgb``'s pixels), square to
        the eye line, and its inner lips in patch pixels."""
        view = mouth_view(points, INTERIOR_VIEW, self.patch_size)
        return view.cut(rgb), view.apply(points[_INNER_WITH_CORNERS, :2])

    @staticmethod
    def skin_stats(points: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """(2, 3) float32: LAB mean and standard deviation of the skin around a face's lips (the ring of
        :func:`skin_view`), the light its mouth is seen in."""
        view, ring = skin_view(points)
        if not ring.any():  # lips that fill the view: their own light is the nearest there is
            ring[:] = 255
        # OpenCV's LAB (sRGB, D65) agrees with livefake.color.rgb_to_lab, which the generator uses, within half
        # a unit (tests), at a tenth of the cost of torch's on so few pixels. As masked_lab_stats: std >= 1.
        lab = cv2.cvtColor(view.cut(rgb, average=False).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
        weight = ring.reshape(-1).astype(np.float32) / max(float(ring.sum()), 1e-6)
        mean = weight @ lab
        std = np.sqrt(np.maximum(weight @ np.square(lab - mean), 1.0))
        return np.stack([mean, std]).astype(np.float32)


def skin_view(points: np.ndarray) -> tuple[CropTransform, np.ndarray]:
    """The low-resolution view in which a face's skin light is measured, and its (m, m) uint8 ring (255) of
    skin around the lips: an ellipse around the mouth, less the lips."""
    m = SKIN_VIEW_SIZE
    view = mouth_view(points, SKIN_VIEW, m)
    ring = np.zeros((m, m), np.uint8)
    cv2.ellipse(ring, (m // 2, m // 2), (int(0.36 * m), int(0.3 * m)), 0, 0, 360, 255, -1)
    cv2.fillPoly(ring, [np.round(view.apply(points[list(fr.LIPS_OUTER), :2])).astype(np.int32)], 0)
    return view, ring


def mouth_view(points: np.ndarray, side: float, size: int) -> CropTransform:
    """The square view of ``size`` pixels around a face's mouth, square to its eye line, ``side`` mouth
    widths across."""
    centre = points[list(fr.LIPS_OUTER), :2].mean(axis=0)
    eye_line = points[263, :2] - points[33, :2]
    return square_view(centre, float(np.arctan2(eye_line[1], eye_line[0])), max(side * fr.mouth_width(points), 1.0),
                       size)
