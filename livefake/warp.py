"""Warp geometry: a thin-plate spline from target landmarks back to source landmarks, as a coarse field.

The spline is solved on the CPU (a small linear system) and sampled on a coarse grid; the generator
upsamples that field and resamples the source crop with ``grid_sample``. Fixed anchors on the crop
border keep the background still; a ring of points around the face moves with the head alone, so hair
and neck follow the pose instead of smearing. A guard checks that the field never folds (its Jacobian
stays positive in every cell) and scales the motion back until it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livefake import face_regions as fr
from livefake.retarget import similarity_fit

_CHEEKS_AND_CHIN = (
    50, 280, 117, 346, 205, 425, 187, 411, 216, 436, 207, 427, 123, 352, 147, 376, 192, 416,
    214, 434, 135, 364, 138, 367, 32, 262, 200, 199, 175, 18, 83, 313, 201, 421, 36, 266, 101, 330,
)
# Landmarks that steer the spline: contours of face, eyes, brows, lips and nose, plus cheeks and chin.
CONTROL_LANDMARKS: tuple[int, ...] = tuple(sorted(set(
    fr.FACE_OVAL + fr.LIPS_OUTER + fr.LIPS_INNER + fr.RIGHT_EYE + fr.LEFT_EYE + fr.RIGHT_BROW
    + fr.LEFT_BROW + fr.NOSE + fr.RIGID + _CHEEKS_AND_CHIN
)))
_HEAD_RING = fr.FACE_OVAL[::2]


@dataclass(frozen=True)
class WarpConfig:
    """``grid_size``: side of the coarse field (default crop/4); ``stiffness``: spline regularisation;
    ``head_ring``: how far out (times the face radius) the ring that follows the head sits."""

    grid_size: int | None = None
    stiffness: float = 1e-4
    head_ring: float = 1.3
    anchors_per_side: int = 8

    def __post_init__(self) -> None:
        if self.grid_size is not None and self.grid_size < 8:
            raise ValueError(f"grid_size must be at least 8, got {self.grid_size}")


def tps_kernel(d2: np.ndarray) -> np.ndarray:
    """Thin-plate radial basis r^2 log r^2 of squared distances (0 at 0)."""
    return d2 * np.log(np.maximum(d2, 1e-12))


def to_unit(points_px: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels (pixel centres at integers) to grid_sample's [-1, 1] (align_corners=False)."""
    return (points_px[:, :2] + 0.5) * (2.0 / size) - 1.0


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
    step = 2.0 * (1.0 - 1.0 / g) / (g - 1)  # a rough identity step; exact value is irrelevant for sign
    return float(np.min(dets)) / step**2


class WarpSolver:
    """Builds the coarse backward field (target crop -> source crop) for one source.

    ``source_points``: (478, 3) source landmarks in crop pixels; ``size``: crop side in pixels.
    """

    def __init__(self, source_points: np.ndarray, size: int, config: WarpConfig | None = None) -> None:
        self.config = config or WarpConfig()
        self.size = size
        self.grid_size = self.config.grid_size or max(8, size // 4)
        self.source_points = source_points.astype(np.float64)
        self._src_unit = to_unit(self.source_points, size)
        n = self.config.anchors_per_side
        edge = np.linspace(-1.0, 1.0, n + 1)[:-1]
        self._anchors = np.concatenate([
            np.stack([edge, -np.ones_like(edge)], 1), np.stack([np.ones_like(edge), edge], 1),
            np.stack([-edge, np.ones_like(edge)], 1), np.stack([-np.ones_like(edge), -edge], 1),
        ])
        # The ring covers the upper head (hair) only: the neck below the jaw stays with the border.
        oval = self._src_unit[list(_HEAD_RING)]
        centre = self._src_unit[list(fr.FACE_OVAL)].mean(axis=0)
        upper = oval[oval[:, 1] < self._src_unit[[33, 263], 1].mean()]
        self._ring_src = np.clip(centre + self.config.head_ring * (upper - centre), -0.8, 0.8)
        # Coarse field nodes run from the first to the last pixel centre.
        lo = -1.0 + 1.0 / size
        axis = np.linspace(lo, -lo, self.grid_size)
        gx, gy = np.meshgrid(axis, axis)
        self.nodes = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (G*G, 2)
        self.identity = self.nodes.reshape(self.grid_size, self.grid_size, 2).astype(np.float32)
        self.num_controls = len(CONTROL_LANDMARKS) + len(self._ring_src) + len(self._anchors)

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
        ring_tgt = (s * self._ring_src @ r[:2, :2].T) + t[:2]
        centres = np.concatenate([tgt[idx], ring_tgt, self._anchors])
        values = np.concatenate([src[idx], self._ring_src, self._anchors])
        return centres, values

    def _source_values(self, tgt: np.ndarray) -> np.ndarray:
        """Source positions the landmarks sample. Where the target opens the mouth wider than the source,
        the inner lips sample a little into the lips, so the opening maps onto a thin band and not a line."""
        src = self._src_unit.copy()
        down = src[list(fr.LIPS_OUTER)].mean(axis=0) - src[[33, 263]].mean(axis=0)
        down /= np.linalg.norm(down)
        band = 0.04 * np.linalg.norm(src[33] - src[263])
        for upper, lower in fr.LIPS_INNER_PAIRS:
            gap_s = float((src[lower] - src[upper]) @ down)
            gap_t = float((tgt[lower] - tgt[upper]) @ down)
            opening = np.clip((gap_t - gap_s) / band, 0.0, 1.0)
            spread = 0.5 * max(0.0, band - gap_s) * opening
            src[upper] -= spread * down
            src[lower] += spread * down
        return src

    def field(self, centres: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Solve the spline through (centres -> values) and sample it: (G, G, 2) float32."""
        n = len(centres)
        k = tps_kernel(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
        k[np.diag_indices(n)] += self.config.stiffness
        p = np.c_[np.ones(n), centres]
        a = np.zeros((n + 3, n + 3))
        a[:n, :n], a[:n, n:], a[n:, :n] = k, p, p.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = values
        coef = np.linalg.solve(a, rhs)
        nodes = self.nodes.astype(np.float32)
        c32 = centres.astype(np.float32)
        d2 = (nodes * nodes).sum(1)[:, None] + (c32 * c32).sum(1)[None, :] - 2.0 * nodes @ c32.T
        u = tps_kernel(np.maximum(d2, 0.0))
        out = u @ coef[:n].astype(np.float32) + coef[n] + nodes @ coef[n + 1:].astype(np.float32)
        return out.reshape(self.grid_size, self.grid_size, 2).astype(np.float32)

    def solve(self, target: np.ndarray, min_margin: float = 0.02) -> tuple[np.ndarray, float]:
        """Coarse backward field for ``target`` ((478, 3) crop pixels) and how much of the motion it keeps
        (1.0 unless the full motion would fold the field and had to be scaled back)."""
        for keep in (1.0, 0.8, 0.6, 0.4, 0.2):
            tgt = self.source_points + keep * (target - self.source_points)
            field = self.field(*self.controls(tgt))
            if fold_margin(field) > min_margin:
                return field, keep
        return self.identity.copy(), 0.0
