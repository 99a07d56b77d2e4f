"""Compositor: paste the generated crop back into the full source photo through a feathered mask."""

from __future__ import annotations

import cv2
import numpy as np

from livefake.source import PreparedSource


def crop_feather(size: int, feather: float) -> np.ndarray:
    """(size, size) float32: 1 inside, easing to 0 over the outer ``feather`` fraction of the crop."""
    ramp = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


class Compositor:
    """Pastes (S, S, 3) uint8 crops into copies of the source photo; pixels outside the crop's
    footprint are never touched."""

    def __init__(self, source: PreparedSource, feather: float = 0.12) -> None:
        self.photo = source.photo
        h, w = self.photo.shape[:2]
        size = source.transform.size
        inverse = source.transform.inverse()
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) - 0.5
        foot = corners @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.maximum(np.floor(foot.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(foot.max(axis=0)).astype(int) + 1, [w, h])
        self.box = (int(x0), int(y0), int(x1), int(y1))
        self._to_box = inverse.copy()
        self._to_box[:, 2] -= (x0, y0)
        self._size = (int(x1 - x0), int(y1 - y0))
        mask = cv2.warpAffine(crop_feather(size, feather), self._to_box, self._size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self._weight = np.ascontiguousarray(mask)
        self._weight_photo = np.ascontiguousarray(1.0 - mask)
        self._background = np.ascontiguousarray(self.photo[y0:y1, x0:x1])

    def paste(self, crop: np.ndarray) -> np.ndarray:
        """A new (H, W, 3) uint8 frame: the photo with ``crop`` blended in where the face is."""
        x0, y0, x1, y1 = self.box
        placed = cv2.warpAffine(crop, self._to_box, self._size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        frame = self.photo.copy()
        frame[y0:y1, x0:x1] = cv2.blendLinear(placed, self._background, self._weight, self._weight_photo)
        return frame
