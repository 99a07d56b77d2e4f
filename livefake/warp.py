"""Warp geometry: a thin-plate spline from target landmarks back to source landmarks, as a coarse field.

The spline is solved on the CPU (a small linear system) and sampled on a coarse grid; the generator
upsamples that field and resamples the source crop with ``grid_sample``. Fixed anchors on the crop
border (and on the photo's own edges below the jaw, where the crop reaches past them) keep the background
still; a ring of points around the face moves with the head alone, so hair and neck follow the pose
instead of smearing. A guard checks that the field never folds (its Jacobian
stays positive in every cell) and scales the motion back until it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from livefake import face_regions as fr
from livefake.retarget import similarity_fit

_CHEEKS_AND_CHIN = (
    50, 280, 117, 346, 205, 425, 187, 411, 216, 436, 207, 427, 123, 352, 147, 376, 192, 416,
    214, 434, 135, 364, 138, 367, 32, 262, 200, 199, 175, 18, 83, 313, 201, 421, 36, 266, 101, 330,
)
# Lid and inner-lip points near the corners sit a pixel or two apart: as spline centres they would
# bend it wildly when an eye or the mouth shuts, so only the middle pairs and the corners steer.
_NEAR_CORNERS = {
    246, 7, 161, 163, 157, 154, 173, 155, 466, 249, 388, 390, 384, 381, 398, 382, 191, 95, 80, 88, 310, 318, 415, 324,
}
# Landmarks that steer the spline: contours of face, eyes, brows, lips and nose, plus cheeks and chin. Not
# the irises: the eye layers draw them (livefake.eyes); as spline centres they moved the iris a little
# and the lids with it.
CONTROL_LANDMARKS: tuple[int, ...] = tuple(sorted(set(
    fr.FACE_OVAL + fr.LIPS_OUTER + fr.LIPS_INNER + fr.RIGHT_EYE + fr.LEFT_EYE + fr.RIGHT_BROW
    + fr.LEFT_BROW + fr.NOSE + fr.RIGID + _CHEEKS_AND_CHIN
) - _NEAR_CORNERS))
# The spline's smoothing levels were tuned on crops where the outer eye corners sit 0.57 apart in [-1, 1]
# coordinates (a 1.25 crop margin). Smoothing acts in proportion to the square of the face's size there, so
# the levels follow the face: at the 1.8 margin the same levels would damp a blink (eyes correlation 0.77
# against 0.85 with them scaled).
_TUNED_INTEROCULAR = 0.57
_HEAD_RING = fr.FACE_OVAL[::2]
# Openings (mouth, eyes) get a control point halfway across each lip or lid pair, so the spline stays
# tame inside an opening that stretches or shuts.
_OPENING_PAIRS = np.array([p for p in fr.LIPS_INNER_PAIRS + fr.RIGHT_EYE_LID_PAIRS + fr.LEFT_EYE_LID_PAIRS
                           if p[0] not in _NEAR_CORNERS])


@dataclass(frozen=True)
class WarpConfig:
    """``grid_size``: side of the coarse field (default 5/16 of the crop, at most 80: a node every 3.2 px at 256,
    fine enough to shut an eye of a face that fills half the crop); ``stiffness``: spline regularisation;
    ``head_ring``: how far out (times the face radius) the ring that follows the head sits."""

    grid_size: int | None = None
    stiffness: float = 1e-5
    head_ring: float = 1.3
    anchors_per_side: int = 16
    min_area_ratio: float = 0.5  # no mesh triangle of the face may shrink below this share of its area

    def __post_init__(self) -> None:
        if self.grid_size is not None and self.grid_size < 8:
            raise ValueError(f"grid_size must be at least 8, got {self.grid_size}")


def tps_kernel(d2: np.ndarray) -> np.ndarray:
    """Thin-plate radial basis r^2 log r^2 of squared distances (0 at 0)."""
    return d2 * np.log(np.maximum(d2, 1e-12))


def tps_system(centres: np.ndarray, stiffness: float | np.ndarray) -> np.ndarray:
    """The (N+3, N+3) thin-plate spline system of (N, 2) ``centres``: the kernel with ``stiffness`` (one
    value, or one per centre) on its diagonal, bordered by the affine part."""
    n = len(centres)
    sq = (centres**2).sum(axis=1)
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = tps_kernel(np.maximum(sq[:, None] + sq[None, :] - 2.0 * centres @ centres.T, 0.0))
    a[np.arange(n), np.arange(n)] += stiffness
    a[:n, n] = a[n, :n] = 1.0
    a[:n, n + 1:] = centres
    a[n + 1:, :n] = centres.T
    return a


def tps_operator(centres: np.ndarray, queries: np.ndarray, stiffness: float = 1e-3) -> np.ndarray:
    """(Q, N) float32 matrix that takes values at N fixed ``centres`` ((N, 2)) to the thin-plate spline
    through them evaluated at ``queries`` ((Q, 2)), for splines whose centres stay while their values change
    every frame: one solve here, then one matrix product per frame. Coordinates about unit scale."""
    solve = np.linalg.inv(tps_system(centres, stiffness))[:, : len(centres)]  # coefficients from centre values
    basis = np.hstack([tps_kernel(np.square(queries[:, None] - centres[None]).sum(axis=-1)),
                       np.ones((len(queries), 1)), queries])
    return (basis @ solve).astype(np.float32)


def to_unit(points_px: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels (pixel centres at integers) to grid_sample's [-1, 1] (align_corners=False)."""
    return (points_px[:, :2] + 0.5) * (2.0 / size) - 1.0


def field_points(field: np.ndarray, size: int, points_px: np.ndarray) -> np.ndarray:
    """Where a coarse backward field ((G, G, 2), nodes from the first to the last pixel centre of a
    ``size`` crop, values in [-1, 1]) takes the crop pixels ``points_px`` ((N, 2)): (N, 2) crop pixels,
    bilinear between the nodes as the generator reads it (points beyond the last node take the edge's)."""
    g = field.shape[0]
    nodes = np.clip(points_px * ((g - 1) / (size - 1)), 0.0, g - 1.0)
    lo = np.minimum(np.floor(nodes).astype(int), g - 2)
    fx, fy = (nodes - lo).T[:, :, None]
    x0, y0 = lo.T
    values = ((1 - fy) * ((1 - fx) * field[y0, x0] + fx * field[y0, x0 + 1])
              + fy * ((1 - fx) * field[y0 + 1, x0] + fx * field[y0 + 1, x0 + 1]))
    return (values + 1.0) * (size / 2.0) - 0.5  # unit back to crop pixels


def field_affine(field: np.ndarray, size: int, point_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a coarse backward field (as :func:`field_points`) takes the crop pixel ``point_px`` ((2,)), and
    its (2, 2) Jacobian there (differences one node apart each way, kept inside the crop)."""
    step = (size - 1) / (field.shape[0] - 1)
    lo = np.maximum(point_px - step, 0.0)
    hi = np.minimum(point_px + step, size - 1.0)
    probes = np.array([point_px, [hi[0], point_px[1]], [lo[0], point_px[1]], [point_px[0], hi[1]],
                       [point_px[0], lo[1]]], np.float64)
    px = field_points(field, size, probes)
    span = np.maximum(hi - lo, 1e-9)
    jacobian = np.stack([(px[1] - px[2]) / span[0], (px[3] - px[4]) / span[1]], axis=1)
    return px[0], jacobian


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed area of each (3,) index triangle of (N, 2) points (positive counter-clockwise in x-right,
    y-down coordinates is clockwise on screen; only the sign relative to the source matters)."""
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def fold_margin(field: np.ndarray) -> float:
    """Smallest Jacobian determinant over every corner of every cell of a (G, G, 2) field, relative to
    the identity field's: 1 for the identity, <= 0 where the field folds."""
    g = field.shape[0]
    dx = field[:, 1:] - field[:, :-1]  # (G, G-1, 2) along x
    dy = field[1:, :] - field[:-1, :]  # (G-1, G, 2) along y
    dets = []
    for ex in (dx[:-1, :], dx[1:, :]):
        for ey in (dy[:, :-1], dy[:, 1:]):
            dets.append(ex[..., 0] * ey[..., 1] - ex[..., 1] * ey[..., 0])
    step = 2.0 / (g - 1)  # about the identity field's node spacing; only the sign is exact
    return float(np.min(dets)) / step**2


class WarpSolver:
    """Builds the coarse backward field (target crop -> source crop) for one source.

    ``source_points``: (478, 3) source landmarks in crop pixels; ``size``: crop side in pixels;
    ``photo_corners``: (4, 2) the photo's corners in crop pixels (top left, top right, bottom right, bottom left),
    to pin its edges below the jaw where the crop reaches past them (:meth:`_below_the_jaw`).
    """

    def __init__(self, source_points: np.ndarray, size: int, config: WarpConfig | None = None,
                 photo_corners: np.ndarray | None = None) -> None:
        self.config = config or WarpConfig()
        self.size = size
        self.grid_size = self.config.grid_size or min(80, max(8, size * 5 // 16))
        self.source_points = source_points.astype(np.float64)
        self._src_unit = to_unit(self.source_points, size)
        # Exact first, then smoother, each scaled to the face's size in the crop (see _TUNED_INTEROCULAR).
        scale = (fr.interocular(self._src_unit) / _TUNED_INTEROCULAR) ** 2
        self._levels = tuple(x * scale for x in (self.config.stiffness, 1e-3, 1e-2, 4e-2))
        n = self.config.anchors_per_side
        edge = np.linspace(-1.0, 1.0, n + 1)[:-1]
        self._anchors = np.concatenate([
            np.stack([edge, -np.ones_like(edge)], 1), np.stack([np.ones_like(edge), edge], 1),
            np.stack([-edge, np.ones_like(edge)], 1), np.stack([-np.ones_like(edge), -edge], 1),
        ])
        # The ring covers the upper head (hair) only: the neck below the jaw stays with the border (the crop's,
        # or the photo's where the crop reaches past it: _below_the_jaw).
        oval = self._src_unit[list(_HEAD_RING)]
        centre = self._src_unit[list(fr.FACE_OVAL)].mean(axis=0)
        upper = oval[oval[:, 1] < self._src_unit[[33, 263], 1].mean()]
        self._ring_src = np.clip(centre + self.config.head_ring * (upper - centre), -0.65, 0.65)
        if photo_corners is not None:
            self._anchors = np.concatenate([self._anchors, self._below_the_jaw(photo_corners, 2.0 / n)])
        # Coarse field nodes run from the first to the last pixel centre.
        lo = -1.0 + 1.0 / size
        axis = np.linspace(lo, -lo, self.grid_size)
        gx, gy = np.meshgrid(axis, axis)
        self.nodes = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (G*G, 2)
        self.identity = self.nodes.reshape(self.grid_size, self.grid_size, 2).astype(np.float32)
        self._nodes32 = self.nodes.astype(np.float32)
        self._axis32 = axis.astype(np.float32)
        self._anchor_kernel = self._kernel(self._anchors)
        self.num_controls = len(CONTROL_LANDMARKS) + len(_OPENING_PAIRS) + len(self._ring_src) + len(self._anchors)
        self._triangles, self._source_areas = self._face_mesh()
        self._level = 0  # the smoothing level the last frame needed (see solve)
        self._frames = 0

    def _below_the_jaw(self, photo_corners: np.ndarray, spacing: float) -> np.ndarray:
        """Fixed anchors ((K, 2) in [-1, 1]) on the photo's edges where they cross the crop below the jaw.

        A crop reaches beyond the photo where the face is near its edge or fills it, and holds the photo's
        edge rows replicated there. The neck below the jaw follows the crop's border, so a head that rose
        pulled those rows up into the picture: streaks under the chin (a close-up whose driver leans in and
        rises). Pinned where the photo ends below the jaw, the neck stretches between the two instead. An
        anchor every ``spacing`` (the border anchors'), half a spacing below the jaw and two clear of the face's
        outline: nearer, it held the chin and drew it out as the head rose. Above the jaw the head ring moves
        the hair, and anchors there fought it (the fold guard then held back the whole motion)."""
        corners = to_unit(np.asarray(photo_corners, np.float64), self.size)
        points = []
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            count = max(int(np.ceil(np.linalg.norm(b - a) / spacing)), 1)
            points.append(a + np.linspace(0.0, 1.0, count, endpoint=False)[:, None] * (b - a))
        edge = np.concatenate(points)
        oval = self._src_unit[list(fr.FACE_OVAL)]
        below = edge[:, 1] > oval[:, 1].max() + spacing / 2
        inside = np.all(np.abs(edge) < 1.0 - spacing / 2, axis=1)
        clear = np.linalg.norm(edge[:, None] - oval[None], axis=-1).min(axis=1) > 2 * spacing
        return edge[below & inside & clear]

    def _face_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Triangles over the control landmarks (indices into CONTROL_LANDMARKS) and their source areas,
        leaving out those that span the mouth or an eye opening (those may close)."""
        idx = list(CONTROL_LANDMARKS)
        pts = self._src_unit[idx]
        tri = Delaunay(pts).simplices
        upper = {p[0] for p in fr.LIPS_INNER_PAIRS + fr.RIGHT_EYE_LID_PAIRS + fr.LEFT_EYE_LID_PAIRS}
        lower = {p[1] for p in fr.LIPS_INNER_PAIRS + fr.RIGHT_EYE_LID_PAIRS + fr.LEFT_EYE_LID_PAIRS}
        names = np.array(idx)[tri]
        spans = np.array([bool(set(t) & upper) and bool(set(t) & lower) for t in names.tolist()])
        # ... and those lying across an opening the photo shows open (an open mouth's Delaunay triangles
        # join the upper lip to points on the lower one that are no lip pair's).
        centroids = pts[tri].mean(axis=1).astype(np.float32)
        for contour in (fr.LIPS_INNER, fr.RIGHT_EYE, fr.LEFT_EYE):
            outline = self._src_unit[list(contour)].astype(np.float32)
            spans |= np.array([cv2.pointPolygonTest(outline, (float(x), float(y)), False) > 0 for x, y in centroids])
        tri = tri[~spans]
        tri = tri[np.abs(_signed_areas(pts, tri)) > 1e-7]
        return tri, _signed_areas(pts, tri)

    def untangle(self, tgt: np.ndarray, iterations: int = 12) -> np.ndarray:
        """Relax target control landmarks ((K, 2) unit coords, CONTROL_LANDMARKS order) so that no face
        triangle shrinks below ``min_area_ratio`` of its source area (crossing landmarks fold a warp):
        the displacement inside such a triangle is pulled towards its mean."""
        src = self._src_unit[list(CONTROL_LANDMARKS)]
        tgt = tgt.copy()
        for _ in range(iterations):
            ratio = _signed_areas(tgt, self._triangles) / self._source_areas
            bad = self._triangles[ratio < self.config.min_area_ratio]
            if len(bad) == 0:
                break
            disp = tgt - src
            pull = np.zeros_like(tgt)
            count = np.zeros(len(tgt))
            mean = disp[bad].mean(axis=1)
            for k in range(3):
                np.add.at(pull, bad[:, k], mean - disp[bad[:, k]])
                np.add.at(count, bad[:, k], 1)
            moved = count > 0
            tgt[moved] += 0.6 * pull[moved] / count[moved, None]
        return tgt

    def controls(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centres, values): where control points sit in the target, and where they sample the source.
        Both (N, 2) in [-1, 1]."""
        idx = list(CONTROL_LANDMARKS)
        tgt = to_unit(target, self.size)
        src = self._source_values(tgt)
        rigid = list(fr.RIGID)
        s, r, t = similarity_fit(
            np.c_[self._src_unit[rigid], np.zeros(len(rigid))], np.c_[tgt[rigid], np.zeros(len(rigid))]
        )
        ring_tgt = np.clip((s * self._ring_src @ r[:2, :2].T) + t[:2], -0.85, 0.85)  # clear of the border
        mid_tgt = 0.5 * (tgt[_OPENING_PAIRS[:, 0]] + tgt[_OPENING_PAIRS[:, 1]])
        mid_src = 0.5 * (src[_OPENING_PAIRS[:, 0]] + src[_OPENING_PAIRS[:, 1]])
        centres = np.concatenate([self.untangle(tgt[idx]), mid_tgt, ring_tgt, self._anchors])
        values = np.concatenate([src[idx], mid_src, self._ring_src, self._anchors])
        return centres, values

    def _source_values(self, tgt: np.ndarray) -> np.ndarray:
        """Source positions the landmarks sample. Where the target opens the mouth much wider than the
        source, the inner lips sample a little into the lips, so the opening (covered by the mouth
        interior) maps onto a band of lip and not onto a line, which would fold the spline."""
        src = self._src_unit.copy()
        down = fr.down_axis(src)
        upper_lip = max(0.0, float((src[13] - src[0]) @ down))
        lower_lip = max(0.0, float((src[17] - src[14]) @ down))
        for upper, lower in fr.LIPS_INNER_PAIRS:
            gap_s = float((src[lower] - src[upper]) @ down)
            gap_t = float((tgt[lower] - tgt[upper]) @ down)
            want = max(0.0, 0.3 * gap_t - gap_s)
            src[upper] -= min(0.5 * want, 0.6 * upper_lip) * down
            src[lower] += min(0.5 * want, 0.6 * lower_lip) * down
        return src

    def field(self, centres: np.ndarray, values: np.ndarray, stiffness: float | None = None) -> np.ndarray:
        """Solve the spline through (centres -> values) and sample it: (G, G, 2) float32."""
        n = len(centres)
        # Smoothing (stiffness) applies to the face's landmarks; the ring and the fixed anchors stay exact.
        diag = np.full(n, self.config.stiffness)
        diag[: len(CONTROL_LANDMARKS) + len(_OPENING_PAIRS)] = self.config.stiffness if stiffness is None else stiffness
        a = tps_system(centres, diag)
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = values
        coef = np.linalg.solve(a, rhs).astype(np.float32)
        # The fixed anchors (crop border, photo edges) come last and never move: their kernel at the nodes is
        # computed once.
        fixed = len(self._anchors) if np.array_equal(centres[n - len(self._anchors):], self._anchors) else 0
        out = self._kernel_times(centres[: n - fixed], coef[: n - fixed])
        out += coef[n] + self._nodes32 @ coef[n + 1:]
        if fixed:
            out += self._anchor_kernel @ coef[n - fixed: n]
        return out.reshape(self.grid_size, self.grid_size, 2)

    def _squared_distances(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G, N) float32 squared distances from each node column's x and each node row's y to each centre:
        the grid is separable, so node (row i, column j) is dy2[i] + dx2[j] away. dx2 carries the 1e-12 that
        keeps log() finite where a node and a centre coincide (a value below float32's step elsewhere)."""
        c32 = centres.astype(np.float32)
        dx2 = np.square(self._axis32[:, None] - c32[None, :, 0])
        dx2 += 1e-12
        return dx2, np.square(self._axis32[:, None] - c32[None, :, 1])

    def _kernel(self, centres: np.ndarray) -> np.ndarray:
        """(G*G, N) float32 thin-plate kernel r^2 log r^2 from every field node to every centre."""
        dx2, dy2 = self._squared_distances(centres)
        d2 = dy2[:, None, :] + dx2[None, :, :]
        return (d2 * np.log(d2)).reshape(-1, len(centres))

    def _kernel_times(self, centres: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """(G*G, 2) float32: :meth:`_kernel` of ``centres`` times ``coef`` ((N, 2)), a block of node rows at a
        time, so each block's kernel stays in the CPU's cache (twice as fast as the whole (G*G, N) kernel).
        The blocks hold r^2 log2 r^2, and the weights take the ln 2 (numpy's log2 takes half log's time)."""
        dx2, dy2 = self._squared_distances(centres)
        g, n = self.grid_size, len(centres)
        rows = min(g, max(1, 8192 * 16 // max(g * n, 1)))  # two buffers of about 0.5 MB each
        d2 = np.empty((rows, g, n), np.float32)
        kernel = np.empty_like(d2)
        weights = (coef * np.log(2.0)).astype(np.float32)
        out = np.empty((g, g, 2), np.float32)
        for top in range(0, g, rows):
            m = min(rows, g - top)
            np.add(dy2[top: top + m, None, :], dx2[None], out=d2[:m])
            np.log2(d2[:m], out=kernel[:m])
            kernel[:m] *= d2[:m]
            np.matmul(kernel[:m].reshape(-1, n), weights, out=out[top: top + m].reshape(-1, 2))
        return out.reshape(-1, 2)

    def solve(self, target: np.ndarray, min_margin: float = 0.02) -> tuple[np.ndarray, float, np.ndarray]:
        """Coarse backward field for ``target`` ((478, 3) crop pixels), how much of the motion it keeps,
        and the target it was solved for (``target`` itself unless the motion was scaled back).

        Where the exact spline would fold (it overshoots between close landmarks that move apart), a
        stiffer, smoothing spline is tried first; only if that folds too is the motion scaled back.
        Call in frame order: each frame starts from what the last one needed."""
        # Smoothing before scaling, exact spline first. Folds come in runs (a mouth held wide open, a head
        # turned), so a frame starts at the level the last one needed and tries one exacter level only
        # every 4th frame: about one solve a frame instead of two in such a run (1e-3 smoothing differs
        # from the exact spline by a fraction of a pixel, so lingering there a few frames does not show).
        controls = self.controls(target)
        levels = self._levels
        self._frames += 1
        for level in range(max(self._level - (self._frames % 4 == 0), 0), len(levels)):
            field = self.field(*controls, stiffness=levels[level])
            if fold_margin(field) > min_margin:
                self._level = level
                return field, 1.0, target
        self._level = len(levels) - 1
        for keep in (0.8, 0.6, 0.4, 0.2):
            tgt = self.source_points + keep * (target - self.source_points)
            field = self.field(*self.controls(tgt), stiffness=levels[-1])
            if fold_margin(field) > min_margin:
                return field, keep, tgt
        return self.identity.copy(), 0.0, self.source_points.copy()
