"""Compositor: paste the generated crop back into the full source photo through a feathered mask.

Or, given the generator's warp field, the face is resampled from the full-resolution photo instead
(:meth:`Compositor.resample`; no crop is generated then): the field is composed with the crop transform,
so a face larger than the crop keeps all its detail; the mouth's interior is laid from the driver's relit
patch (:class:`MouthOpening`), and the eyes and lips the frame redrew from :mod:`livefake.detail`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from livefake.detail import DetailFrame
from livefake.source import PreparedSource


def crop_feather(size: int, feather: float) -> np.ndarray:
    """(size, size) float32: 1 inside, easing to 0 over the outer ``feather`` fraction of the crop."""
    ramp = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def landing(matrix: np.ndarray, lo: tuple[float, float], hi: tuple[float, float],
            limit: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixel rectangle (x0, y0, x1, y1), end exclusive, within (0, 0)-``limit`` (w, h), that the
    rectangle ``lo``-``hi`` lands on through the (2, 3) affine ``matrix``; empty where it lands outside."""
    corners = np.array([lo, hi, (lo[0], hi[1]), (hi[0], lo[1])], np.float64)
    landed = corners @ matrix[:, :2].T + matrix[:, 2]
    x0, y0 = np.clip(np.floor(landed.min(axis=0)).astype(int), 0, limit)
    x1, y1 = np.clip(np.ceil(landed.max(axis=0)).astype(int) + 1, 0, limit)
    return int(x0), int(y0), int(x1), int(y1)


_OUTLINE_BLUR_PX = 0.75  # photo pixels the drawn outline of the mouth's opening is softened by


def _crop_pixels(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel x and y ((len(ys), len(xs)) float32 each) of the photo pixels on the grid ``xs`` x ``ys``,
    through the crop transform's (2, 3) ``matrix``."""
    bx, by = np.meshgrid(xs, ys)
    return ((matrix[0, 0] * bx + matrix[0, 1] * by + matrix[0, 2]).astype(np.float32),
            (matrix[1, 0] * bx + matrix[1, 1] * by + matrix[1, 2]).astype(np.float32))


GAIN_SHRINK = 4  # the shading's gain is looked up on a box this many times smaller, then enlarged


@dataclass(frozen=True)
class MouthOpening:
    """The mouth's interior for the full-resolution paste, as the generator draws it into the crop: inside
    ``outline`` ((K, 2) crop pixels, the target's inner lips), ``weight`` (0 to 1) of ``interior`` ((M, M, 3)
    uint8, the driver's mouth in the source's light), which ``affine`` ((2, 3)) maps onto the crop (crop
    unit coordinates to the interior's, ``grid_sample``'s convention)."""

    outline: np.ndarray
    weight: float
    interior: np.ndarray
    affine: np.ndarray


class Compositor:
    """Pastes (S, S, 3) uint8 crops into copies of the source photo (:meth:`paste`), or resamples the photo's
    own face through a warp field (:meth:`resample`); pixels outside the crop's footprint are never touched."""

    def __init__(self, source: PreparedSource, feather: float = 0.12) -> None:
        self.photo = source.photo
        h, w = self.photo.shape[:2]
        size = source.transform.size
        inverse = source.transform.inverse()
        self.box = x0, y0, x1, y1 = landing(inverse, (-0.5, -0.5), (size - 0.5, size - 0.5), (w, h))
        self._to_box = inverse.copy()
        self._to_box[:, 2] -= (x0, y0)
        self._size = (int(x1 - x0), int(y1 - y0))
        mask = self._into(crop_feather(size, feather), (0, 0, *self._size), cv2.BORDER_CONSTANT)
        self._weight = np.ascontiguousarray(mask)
        self._weight_photo = np.ascontiguousarray(1.0 - mask)
        self._background = np.ascontiguousarray(self.photo[y0:y1, x0:x1])
        self._size_px = size
        # Box pixels in crop unit coordinates ([-1, 1], align_corners=False), where the mouth's affine starts.
        self._box_to_unit = cv2.invertAffineTransform(self._to_box) * (2.0 / size)
        self._box_to_unit[:, 2] += 1.0 / size - 1.0
        # Box pixels in crop pixels, for looking up the warp field at photo resolution. The shading's gain is
        # smooth, and looked up at every pixel it cost 2-3 ms a frame: it is looked up every GAIN_SHRINK pixels
        # instead, one more each way beyond the box, where cv2.resize reads when it enlarges that grid
        # GAIN_SHRINK times (so the box's edges are read between samples too, not from a replicated border).
        m = source.transform.matrix
        self._crop_x, self._crop_y = _crop_pixels(m, np.arange(x0, x1, dtype=np.float64),
                                                  np.arange(y0, y1, dtype=np.float64))
        k = GAIN_SHRINK
        samples = [-(-side // k) + 2 for side in self._size]
        self._gain_x, self._gain_y = _crop_pixels(m, x0 + k * (np.arange(samples[0]) - 1) + (k - 1) / 2,
                                                  y0 + k * (np.arange(samples[1]) - 1) + (k - 1) / 2)
        self._gain_size, self._gain_shrink = (k * samples[0], k * samples[1]), k
        # Crop unit coordinates ([-1, 1], align_corners=False) to photo pixels: p = A @ u + b.
        half = size / 2.0
        self._unit_to_photo_matrix = np.hstack([
            inverse[:, :2] * half, (inverse[:, :2] @ np.array([half - 0.5, half - 0.5]) + inverse[:, 2])[:, None]
        ])
        self._crop_step: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def paste(self, crop: np.ndarray) -> np.ndarray:
        """A new (H, W, 3) uint8 frame: the photo with the generated face, ``crop`` ((S, S, 3) uint8 generator
        output), blended in where the face is."""
        return self._blend(self._into(crop, (0, 0, *self._size)))

    def resample(self, field: np.ndarray, opening: MouthOpening | None = None, shading: np.ndarray | None = None,
                 detail: DetailFrame | None = None) -> np.ndarray:
        """A new (H, W, 3) uint8 frame: the photo with its face resampled from the photo itself at full
        resolution through ``field`` ((G, G, 2) float32 backward warp in crop unit coordinates), as the
        generator warps the crop. ``opening`` draws the mouth's interior into it, and ``detail``
        (:mod:`livefake.detail`), resampled through the same warp, the eyes and lips the frame redrew, where
        it says they show, both at the photo's resolution; ``shading`` ((H, H, 3) float32 gain on the source
        crop, as the generator takes it) lights the resampled face."""
        return self._blend(self._warp_photo(field, opening, shading, detail))

    def _blend(self, placed: np.ndarray) -> np.ndarray:
        """A copy of the photo with ``placed`` (the box's pixels) blended in under the feathered mask."""
        x0, y0, x1, y1 = self.box
        frame = self.photo.copy()
        frame[y0:y1, x0:x1] = cv2.blendLinear(placed, self._background, self._weight, self._weight_photo)
        return frame

    def _into(self, image: np.ndarray, rect: tuple[int, int, int, int],
              border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """A crop-sized ``image`` resampled into the part ``rect`` (x0, y0, x1, y1) of the box (0 beyond the
        crop with ``cv2.BORDER_CONSTANT``)."""
        x0, y0, x1, y1 = rect
        to_rect = self._to_box.copy()
        to_rect[:, 2] -= (x0, y0)
        return cv2.warpAffine(image, to_rect, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=border,
                              borderValue=0)

    def _warp_photo(self, field: np.ndarray, opening: MouthOpening | None, shading: np.ndarray | None,
                    detail: DetailFrame | None) -> np.ndarray:
        g = field.shape[0]
        if self._crop_step is None or self._crop_step[0] != g:
            step = (g - 1) / (self._size_px - 1)  # coarse nodes sit on the first and last pixel centres
            self._crop_step = (g, self._crop_x * step, self._crop_y * step, self._gain_x * step, self._gain_y * step)
        _, grid_x, grid_y, gain_x, gain_y = self._crop_step
        # What the field's nodes read (photo pixels, the shading's gain) is found at the nodes and only then
        # spread over the box: an affine map commutes with bilinear interpolation, and the gain is smooth.
        nodes = cv2.transform(field, self._unit_to_photo_matrix)
        photo_xy = cv2.remap(nodes, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        warped = cv2.remap(self.photo, photo_xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if detail is not None:
            self._lay_detail(warped, photo_xy, detail)
        if shading is not None and np.any(shading != 1.0):
            at = (field + 1.0) * (shading.shape[0] / 2.0) - 0.5
            gain = cv2.remap(shading, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            gain = cv2.resize(cv2.remap(gain, gain_x, gain_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                              self._gain_size, interpolation=cv2.INTER_LINEAR)
            k = self._gain_shrink
            gain = gain[k:k + self._size[1], k:k + self._size[0]]
            warped = cv2.multiply(warped, gain, dtype=cv2.CV_8U)
        if opening is not None and opening.weight > 0 and len(opening.outline):
            self._lay_interior(warped, opening)
        return warped

    def _lay_interior(self, warped: np.ndarray, opening: MouthOpening) -> None:
        """Blend the mouth's interior into ``warped`` (the box, in place) inside its outline, both drawn at the
        box's resolution: from the crop, magnified as a close-up's is, the lips' inner edge came out in steps."""
        outline = opening.outline @ self._to_box[:, :2].T + self._to_box[:, 2]
        pad = 3
        x0, y0 = np.clip(np.floor(outline.min(axis=0)).astype(int) - pad, 0, self._size)
        x1, y1 = np.clip(np.ceil(outline.max(axis=0)).astype(int) + pad + 1, 0, self._size)
        if x1 <= x0 or y1 <= y0:
            return
        drawn = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shift = 4
        cv2.fillPoly(drawn, [np.round((outline - (x0, y0)) * (1 << shift)).astype(np.int32)], 255,
                     lineType=cv2.LINE_AA, shift=shift)
        inside = cv2.GaussianBlur(drawn.astype(np.float32), (0, 0), _OUTLINE_BLUR_PX) * (opening.weight / 255.0)
        # The part's pixels -> crop unit -> the interior's unit -> its pixels, as one affine.
        to_unit = self._box_to_unit[:, :2], self._box_to_unit[:, :2] @ (x0, y0) + self._box_to_unit[:, 2]
        a = opening.affine
        m = opening.interior.shape[0]
        chain = np.hstack([a[:, :2] @ to_unit[0], (a[:, :2] @ to_unit[1] + a[:, 2])[:, None]]) * (m / 2.0)
        chain[:, 2] += m / 2.0 - 0.5
        interior = cv2.warpAffine(opening.interior, chain, (x1 - x0, y1 - y0),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        warped[y0:y1, x0:x1] = cv2.blendLinear(interior, warped[y0:y1, x0:x1], inside, 1.0 - inside)

    def _lay_detail(self, warped: np.ndarray, photo_xy: np.ndarray, detail: DetailFrame) -> None:
        """Blend into ``warped`` (the box, in place) the detail resampled where ``photo_xy`` ((h, w, 2) photo
        pixels per box pixel) reads, where the detail's ``shows`` mask lands."""
        rect = self._landing(detail.shows)
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        at = cv2.transform(photo_xy[y0:y1, x0:x1], detail.transform.matrix)
        # The part of the base these pixels read, with this frame's windows laid over it.
        size = detail.base.shape[0]
        (x_lo, x_hi, _, _), (y_lo, y_hi, _, _) = (cv2.minMaxLoc(channel) for channel in cv2.split(at))
        left, top = (min(max(int(np.floor(v)) - 1, 0), size - 1) for v in (x_lo, y_lo))
        right, bottom = (min(max(int(np.ceil(v)) + 2, lo + 1), size) for v, lo in ((x_hi, left), (y_hi, top)))
        region = detail.base[top:bottom, left:right].copy()
        for row, col, pixels in detail.patches:
            h, w = pixels.shape[:2]
            r0, c0 = max(row, top), max(col, left)
            r1, c1 = min(row + h, bottom), min(col + w, right)
            if r1 > r0 and c1 > c0:
                region[r0 - top:r1 - top, c0 - left:c1 - left] = pixels[r0 - row:r1 - row, c0 - col:c1 - col]
        fine = cv2.remap(region, at - np.array([left, top], np.float32), None, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        inside = self._into(detail.shows, rect, cv2.BORDER_CONSTANT)
        warped[y0:y1, x0:x1] = cv2.blendLinear(fine, warped[y0:y1, x0:x1], inside, 1.0 - inside)

    def _landing(self, crop_mask: np.ndarray, pad: int = 2) -> tuple[int, int, int, int] | None:
        """The part (x0, y0, x1, y1) of the box where a crop mask's nonzero pixels land, or None."""
        ys, xs = np.nonzero(crop_mask)
        if len(xs) == 0:
            return None
        x0, y0, x1, y1 = landing(self._to_box, (xs.min() - pad, ys.min() - pad), (xs.max() + pad, ys.max() + pad),
                                 self._size)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
