"""Openings the warp leaves too open: the lids of a blinking eye, the lips of a shutting mouth.

Shutting an opening asks the spline to squeeze it to a slit, and where the exact spline would fold the
warp uses a smoothed one, which squeezes it only in part: a blink leaves the eye a third open, a photo's
wide-open mouth shut at the driver's rest leaves a dark "O" (o_mouth.jpg's mouth correlation 0.51 on
glasses.mp4). Here, in the source's geometry, the lids or lips are slid over the opening by what the warp
left: the skin over each one is stretched by that much, so its edge (the lash line, the lip's edge) lands
where the warp will show the target's. Before the generator warps the source, so it needs no new input.

A :class:`SlidingOpening` holds one opening of the source crop, and gives what it redraws as a
:class:`SourcePatch`; :func:`warp_mask` carries a source-space mask through the warp (the full-resolution
paste takes :mod:`livefake.detail`'s redrawn eyes and lips where the source crop changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from livefake.warp import field_points

SLIDE_SLACK = 0.25  # crop pixels the warp may leave an opening more open than the target before it slides


@dataclass(frozen=True)
class SourcePatch:
    """A window of a (3, S, S) source crop as one frame redraws it: its top row, its left column and its
    pixels ((3, h, w) float32)."""

    top: int
    left: int
    pixels: np.ndarray

    def lay_into(self, source: np.ndarray) -> None:
        """Write this window into ``source`` ((3, S, S)), in place."""
        _, h, w = self.pixels.shape
        source[:, self.top:self.top + h, self.left:self.left + w] = self.pixels

    def laid_on(self, source: np.ndarray) -> np.ndarray:
        """A copy of ``source`` ((3, S, S)) with this window in it."""
        out = source.copy()
        self.lay_into(out)
        return out


class SlidingOpening:
    """One opening of the source crop, between an upper and a lower line of landmarks.

    ``upper``, ``lower``: landmark indices (corner, the paired points across the opening, corner), upper line
    first; ``points``: the source's (478, 2+) landmarks in crop pixels; ``size``: the crop's side. The lines
    run along x: the source crop is cut with the eyes level (``source.face_crop_transform``).
    """

    def __init__(self, upper: list[int], lower: list[int], points: np.ndarray, size: int) -> None:
        self.upper_ids, self.lower_ids = list(upper), list(lower)
        self.upper = points[self.upper_ids, :2].astype(np.float64)
        self.lower = points[self.lower_ids, :2].astype(np.float64)
        self.size = size
        gap = float(np.max(self.lower[:, 1] - self.upper[:, 1], initial=0.0))
        xs = np.concatenate([self.upper[:, 0], self.lower[:, 0]])
        # The window reaches an opening's height above and below it: the skin each line brings along.
        self.top = max(int(np.floor(self.upper[:, 1].min() - gap)) - 2, 0)
        self.left = max(int(np.floor(xs.min())), 0)
        self.bottom = min(int(np.ceil(self.lower[:, 1].max() + gap)) + 3, size)
        self.right = min(int(np.ceil(xs.max())) + 1, size)

    @classmethod
    def across(cls, pairs: tuple[tuple[int, int], ...], corners: tuple[int, int], points: np.ndarray,
               size: int) -> SlidingOpening:
        """The opening between the (upper, lower) landmark ``pairs`` across it, from one corner to the other."""
        return cls([corners[0], *(p[0] for p in pairs), corners[1]], [corners[0], *(p[1] for p in pairs), corners[1]],
                   points, size)

    def shortfall(self, target: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far (crop pixels, at each point of the upper and the lower line) the warp ``field`` shows the
        source's opening beyond the target's ((478, 2+) ``target`` landmarks): where the target's upper line
        samples the source below the source's own, and the lower likewise above. A quarter pixel is let go
        (the smoothed spline is that close nearly always); together they never exceed the opening, and the
        corners stay."""
        sampled = field_points(field, self.size, target[self.upper_ids + self.lower_ids, :2])
        n = len(self.upper_ids)
        up = np.maximum(sampled[:n, 1] - self.upper[:, 1] - SLIDE_SLACK, 0.0)
        down = np.maximum(self.lower[:, 1] - sampled[n:, 1] - SLIDE_SLACK, 0.0)
        gap = np.maximum(self.lower[:, 1] - self.upper[:, 1], 0.0)
        scale = np.minimum(1.0, gap / np.maximum(up + down, 1e-9))
        up, down = up * scale, down * scale
        up[[0, -1]] = down[[0, -1]] = 0.0
        return up, down

    def slide(self, window: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
        """``window`` ((3, h, w): the crop's rows from ``top``, columns from ``left``) with the upper line slid
        down by ``up`` and the lower one up by ``down`` (per point, interpolated along the opening): the skin
        over each line, a band as tall as the opening, is stretched over the shift, so the edge lands that
        much further in and nothing is drawn twice."""
        _, h, w = window.shape
        x = np.arange(w, dtype=np.float64) + self.left
        order_u, order_l = np.argsort(self.upper[:, 0]), np.argsort(self.lower[:, 0])
        line_u = np.interp(x, self.upper[order_u, 0], self.upper[order_u, 1]) - self.top
        line_l = np.interp(x, self.lower[order_l, 0], self.lower[order_l, 1]) - self.top
        shift_u = np.interp(x, self.upper[order_u, 0], up[order_u], left=0.0, right=0.0)
        shift_l = np.interp(x, self.lower[order_l, 0], down[order_l], left=0.0, right=0.0)
        band = np.maximum(line_l - line_u, 1.0)
        band_u = np.clip(np.minimum(band, line_u), 1e-3, None)  # within the window (the crop's edge)
        band_l = np.clip(np.minimum(band, h - 1.0 - line_l), 1e-3, None)
        gy = np.arange(h, dtype=np.float64)[:, None]
        map_y = gy.repeat(w, axis=1)
        # Upper: rows [line_u - band, line_u + shift_u] show rows [line_u - band, line_u], stretched.
        top = line_u - band_u
        upper = (gy >= top) & (gy <= line_u + shift_u)
        map_y = np.where(upper, top + (gy - top) * band_u / (band_u + shift_u), map_y)
        # Lower: rows [line_l - shift_l, line_l + band] show rows [line_l, line_l + band], stretched.
        bottom = line_l + band_l
        lower = (gy >= line_l - shift_l) & (gy <= bottom) & ~upper
        map_y = np.where(lower, bottom - (bottom - gy) * band_l / (band_l + shift_l), map_y)
        map_x = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
        hwc = np.ascontiguousarray(window.transpose(1, 2, 0))
        slid = cv2.remap(hwc, map_x, map_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return slid.transpose(2, 0, 1)

    def slid(self, source: np.ndarray, target: np.ndarray, field: np.ndarray) -> SourcePatch | None:
        """The window of ``source`` ((3, S, S) float32, never written to) this opening lies in, slid shut by
        what the warp leaves open for ``target``; ``None`` when the warp leaves nothing open."""
        up, down = self.shortfall(target, field)
        if not (up.any() or down.any()) or self.top >= self.bottom or self.left >= self.right:
            return None
        window = source[:, self.top:self.bottom, self.left:self.right]
        return SourcePatch(self.top, self.left, self.slide(window, up, down))

    def close(self, source: np.ndarray, target: np.ndarray, field: np.ndarray) -> np.ndarray:
        """``source`` ((3, S, S) float32) with this opening slid shut by what the warp leaves open for
        ``target``: ``source`` itself when nothing is (it is never written to), else a new array."""
        patch = self.slid(source, target, field)
        return source if patch is None else patch.laid_on(source)

def warp_mask(field: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, S) float32: where the warp ``field`` ((G, G, 2), :class:`~livefake.warp.WarpSolver`) shows the
    pixels a source-space ``mask`` ((S, S) float32) covers."""
    size = mask.shape[0]
    g = field.shape[0]
    nodes = np.arange(size, dtype=np.float32) * ((g - 1) / (size - 1))
    gx, gy = np.meshgrid(nodes, nodes)
    unit = cv2.remap(field, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    px = (unit + 1.0) * (size / 2.0) - 0.5
    return cv2.remap(mask, px[..., 0], px[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
