"""Shading transfer: the change of light on the driver's face, carried onto the source.

A warp moves the source's pixels but never changes their light: when the driver turns towards a lamp or
the sun moves across their face, the photo would stay as lit as it was. Here the driver's frame is pulled
back into the geometry of its neutral frame through the landmark spline, and the blurred frame over the
blurred neutral frame, per colour channel, is how the light changed: an expression ratio image (Liu, Shan
and Zhang, SIGGRAPH 2001), kept low-pass so that the driver's own skin and features do not come across.
It is measured on a small crop of the driver (64 px), carried onto the source crop through the spline
between the two neutral faces' landmarks, and enters the generator as a (3, 64, 64) gain on the source.

Dense optical flow between the same two images (to carry the motion the landmarks miss) was tried beside
it: it raised self-reenactment by 0.8 dB but lowered the pose correlations of other faces (talking.mp4
yaw 0.90 -> 0.82), so the light is carried and the motion is left to the landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.landmarks import FaceLandmarks
from livefake.source import face_crop_transform
from livefake.warp import CONTROL_LANDMARKS, tps_operator

_CONTROLS = list(CONTROL_LANDMARKS)
_SPLINE_GRID = 32  # the driver-to-neutral spline is evaluated this coarsely, then upsampled (it is smooth)


@dataclass(frozen=True)
class ShadingConfig:
    """``enabled``: carry the driver's light (off: the photo keeps its own); ``resolution``: side of the
    driver crop it is measured on; ``grid``: side of the gain the generator takes; ``blur``: Gaussian sigma
    as a share of ``resolution`` (about a tenth of the eye distance); gains stay within [``min_gain``,
    ``max_gain``]; ``fade``: the share of the last gain's change kept per frame while the face is lost."""

    enabled: bool = True
    resolution: int = 64
    grid: int = 64
    blur: float = 0.04
    min_gain: float = 0.5
    max_gain: float = 2.0
    fade: float = 0.85

    def __post_init__(self) -> None:
        if self.resolution < 32 or self.grid < 8:
            raise ValueError(f"resolution >= 32 and grid >= 8 expected, got {self.resolution}, {self.grid}")
        if not 0 < self.min_gain <= 1 <= self.max_gain:
            raise ValueError(f"expected 0 < min_gain <= 1 <= max_gain, got {self.min_gain}, {self.max_gain}")


def _hull_mask(points: np.ndarray, indices: tuple[int, ...], size: int, grow_px: float = 0.0) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[list(indices), :2]).astype(np.int32)), 1)
    grow = int(round(grow_px))
    if grow > 0:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(np.float32)


class _NeutralFrame:
    """The driver's neutral frame as the shading needs it, and where each source-crop gain node looks in it."""

    def __init__(self, rgb: np.ndarray, points: np.ndarray, source_points: np.ndarray, source_size: int,
                 config: ShadingConfig) -> None:
        r, g = config.resolution, config.grid
        transform = face_crop_transform(points, r)
        q = transform.apply(points.astype(np.float64))
        iod = fr.interocular(q)
        # Where each neutral-crop pixel is in a later frame: a spline with the neutral landmarks as fixed
        # centres, so a frame costs one (32*32, N) product.
        axis = (np.arange(_SPLINE_GRID) + 0.5) * (r / _SPLINE_GRID) - 0.5
        nodes = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
        self.to_frame = tps_operator(q[_CONTROLS, :2] * (2 / r) - 1, nodes * (2 / r) - 1)
        oval = _hull_mask(q, fr.FACE_OVAL, r)
        # Light is read from skin: eyes and lips (which open and shut) are left out and filled from around.
        eyes = np.maximum(_hull_mask(q, fr.RIGHT_EYE, r, 0.06 * iod), _hull_mask(q, fr.LEFT_EYE, r, 0.06 * iod))
        shut = np.maximum(eyes, _hull_mask(q, fr.LIPS_OUTER, r, 0.025 * iod))
        self.skin = cv2.erode(oval, np.ones((3, 3), np.uint8)) * (1.0 - shut)
        self.sigma = config.blur * r
        self.skin_blur = np.maximum(cv2.GaussianBlur(self.skin, (0, 0), self.sigma), 1e-3)
        self.resolution = r
        self.light = self.skin_light(self.pull(rgb, points))  # pulled like later frames: a gain of 1 here
        # Full gain on the face, none off it or where the blur saw little skin.
        self.weight = (cv2.GaussianBlur(oval, (0, 0), 0.025 * r) * np.clip(self.skin_blur / 0.3, 0.0, 1.0))[..., None]
        # Source crop -> neutral crop, sampled at the gain grid's nodes (source crop pixels).
        src_axis = (np.arange(g) + 0.5) * (source_size / g) - 0.5
        src_nodes = np.stack(np.meshgrid(src_axis, src_axis), axis=-1).reshape(-1, 2)
        to_neutral = tps_operator(source_points[_CONTROLS, :2] * (2 / source_size) - 1,
                                  src_nodes * (2 / source_size) - 1)
        neutral_xy = to_neutral @ q[_CONTROLS, :2].astype(np.float32)
        self.source_to_neutral = np.ascontiguousarray(neutral_xy.reshape(g, g, 2))

    def pull(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(R, R, 3) uint8: a driving frame resampled into the neutral crop's geometry by its landmarks."""
        where = (self.to_frame @ points[_CONTROLS, :2].astype(np.float32)).reshape(_SPLINE_GRID, _SPLINE_GRID, 2)
        where = cv2.resize(where, (self.resolution, self.resolution), interpolation=cv2.INTER_LINEAR)
        return cv2.remap(rgb, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def skin_light(self, crop: np.ndarray) -> np.ndarray:
        """(R, R, 3) float32: the crop's colour blurred over skin alone (eyes and lips filled from around)."""
        blurred = cv2.GaussianBlur(crop.astype(np.float32) * self.skin[..., None], (0, 0), self.sigma)
        return blurred / self.skin_blur[..., None]


class ShadingTransfer:
    """Measures each driving frame's change of light against the driver's neutral frame, for one source.

    ``source_points``: (478, 3) source landmarks in crop pixels; ``size``: source crop side.
    """

    def __init__(self, source_points: np.ndarray, size: int, config: ShadingConfig | None = None) -> None:
        self.config = config or ShadingConfig()
        self.size = size
        self.source_points = source_points.astype(np.float64)
        self.unlit = np.ones((self.config.grid, self.config.grid, 3), np.float32)
        self._neutral: _NeutralFrame | None = None
        self._neutral_id = 0
        self._last = self.unlit

    def gain(self, reference_id: int, face: FaceLandmarks | None, driver_rgb: np.ndarray | None) -> np.ndarray:
        """(G, G, 3) float32 gain on the source crop for one driving frame; call in frame order.

        ``reference_id`` names the driver's neutral pose (:attr:`livefake.retarget.Motion.reference_id`):
        when it changes, this frame becomes the neutral one. Without a face (or pixels) the last gain fades.
        """
        if not self.config.enabled or reference_id == 0:
            return self.unlit
        if face is None or driver_rgb is None:
            self._last = (1.0 + self.config.fade * (self._last - 1.0)).astype(np.float32)
            return self._last
        points = face.points.astype(np.float64)
        if reference_id != self._neutral_id or self._neutral is None:
            self._neutral = _NeutralFrame(driver_rgb, points, self.source_points, self.size, self.config)
            self._neutral_id = reference_id
        neutral, cfg = self._neutral, self.config
        # +4 levels keeps dark skin from turning small changes into large gains.
        gain = (neutral.skin_light(neutral.pull(driver_rgb, points)) + 4.0) / (neutral.light + 4.0)
        gain = 1.0 + neutral.weight * (np.clip(gain, cfg.min_gain, cfg.max_gain) - 1.0)
        grid = neutral.source_to_neutral
        self._last = cv2.remap(gain, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(1.0, 1.0, 1.0))
        return self._last
