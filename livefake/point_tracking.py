"""The driver's landmarks steadied by the motion of the skin under them (a complementary filter).

MediaPipe fits its mesh anew on every frame: its points wander by pixels from one frame to the next
where the skin under them did not move (on talking.mp4 its tracking and static modes disagree by 3.3 px
on average). Pyramidal Lucas-Kanade optical flow follows the skin from frame to frame to a fraction of a
pixel, but drifts over many. So every skin point is carried by the flow from where it was shown on the
last frame, then moved a share (``gain``) of the way to MediaPipe's point: the flow gives the motion
between frames, MediaPipe holds the long run, and what is left of its wander is about a quarter
(``gain`` 0.1: the spread of a first-order filter, sqrt(gain / (2 - gain))), without the lag of a
smoothing filter.

Lips, eyelids and irises change their look as they open and shut, which the flow cannot follow, and the
face's outline lies on its silhouette: as the head turns it slides over the skin, and the flow there
follows the hair or background behind it (steadied, it dragged talking.mp4's head roll 2 frames late
and a fifth short). These keep MediaPipe's points (and the retargeter's One-Euro smoothing, which skips
the steadied ones). A point whose flow is lost, or lands farther than ``max_gap`` from MediaPipe's,
takes MediaPipe's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.landmarks import FaceLandmarks, LandmarkDetector

# Points whose look changes with the expression (the lips, the eyes' lids, the irises) and the outline.
_UNTRACKED = frozenset(fr.LIPS_INNER) | frozenset(fr.LIPS_OUTER) | frozenset(fr.RIGHT_EYE) \
    | frozenset(fr.LEFT_EYE) | frozenset(fr.RIGHT_IRIS) | frozenset(fr.LEFT_IRIS) | frozenset(fr.FACE_OVAL)
TRACKED = np.array([i not in _UNTRACKED for i in range(478)])


@dataclass(frozen=True)
class PointTrackingConfig:
    """``enabled``: steady the driver's skin points by the flow; ``gain``: the share of the way to
    MediaPipe's point taken each frame (1: MediaPipe alone); ``max_side``: the face region is scaled to at
    most this side for the flow; ``window``, ``levels``: Lucas-Kanade window (px) and pyramid levels;
    ``max_gap``: farther than this from MediaPipe's point (interocular distances) the flow is not trusted."""

    enabled: bool = True
    gain: float = 0.1
    max_side: int = 128
    window: int = 11
    levels: int = 2
    max_gap: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.gain <= 1:
            raise ValueError(f"gain must be in (0, 1], got {self.gain}")
        if self.max_side < 64 or self.window < 5 or self.levels < 0:
            raise ValueError(f"expected max_side >= 64, window >= 5, levels >= 0, got {self}")


class PointTracker:
    """Steadies one driver's landmarks frame by frame (call :meth:`update` on frames in order)."""

    def __init__(self, config: PointTrackingConfig | None = None) -> None:
        self.config = config or PointTrackingConfig()
        self._criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
        self.reset()

    def reset(self) -> None:
        """Forget the last frame: the next face is taken as MediaPipe gives it."""
        self._gray: np.ndarray | None = None
        self._points: np.ndarray | None = None  # (478, 3) shown on the last frame, frame pixels
        self._region: tuple[int, int, int, int, int, int] | None = None  # x0, y0, x1, y1 and the size cut

    def update(self, face: FaceLandmarks | None, rgb: np.ndarray) -> FaceLandmarks | None:
        """``face`` (MediaPipe's landmarks of ``rgb``) with its skin points steadied; ``None`` stays None
        and starts over."""
        if face is None or not self.config.enabled:
            self.reset()
            return face
        points = face.points.astype(np.float64)
        steady = np.zeros(len(points), bool)
        gray = None
        if self._points is not None and self._region is not None and self._gray is not None:
            gray = self._cut(rgb, self._region)
            carried, ok = self._flow(self._gray, gray, self._points[TRACKED, :2], self._region)
            gap = np.linalg.norm(carried - points[TRACKED, :2], axis=1)
            steady[TRACKED] = ok & (gap < self.config.max_gap * fr.interocular(points))
            mp = points[steady, :2]
            points[steady, :2] = carried[steady[TRACKED]] + self.config.gain * (mp - carried[steady[TRACKED]])
        region = self._face_region(points, rgb.shape)
        if region != self._region or gray is None:  # the region holds while the face stays well inside it
            self._region, gray = region, self._cut(rgb, region)
        self._gray, self._points = gray, points
        return replace(face, points=points.astype(np.float32), steady=steady)

    def _face_region(self, points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int, int, int]:
        """The face's box with a margin for the motion to the next frame, and its size scaled to fit
        ``max_side``: the last one while the face keeps a tenth of its size inside it and fills most of it."""
        low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        size = float((high - low).max())
        if self._region is not None:
            x0, y0, x1, y1, _, _ = self._region
            inner = 0.1 * size
            if (low >= (x0 + inner, y0 + inner)).all() and (high <= (x1 - inner, y1 - inner)).all() \
                    and max(x1 - x0, y1 - y0) < 1.8 * size:
                return self._region
        margin = 0.2 * size
        x0, y0 = (max(0, int(v)) for v in low - margin)
        x1, y1 = min(shape[1], int(high[0] + margin) + 1), min(shape[0], int(high[1] + margin) + 1)
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        scale = min(1.0, self.config.max_side / max(x1 - x0, y1 - y0))
        return x0, y0, x1, y1, max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))

    @staticmethod
    def _cut(rgb: np.ndarray, region: tuple[int, int, int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1, width, height = region
        gray = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        if gray.shape != (height, width):
            gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
        return gray

    def _flow(self, before: np.ndarray, after: np.ndarray, xy: np.ndarray,
              region: tuple[int, int, int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Where the flow carries frame-pixel points ``xy`` (N, 2) from ``before`` to ``after`` (both cut
        by ``region``), and which it followed."""
        x0, y0, x1, y1, width, height = region
        scale = np.array([width / (x1 - x0), height / (y1 - y0)])
        # The resized pixel centres: region pixel (x + 0.5) * scale - 0.5
        local = ((xy - (x0, y0) + 0.5) * scale - 0.5).astype(np.float32).reshape(-1, 1, 2)
        if before.shape != after.shape:
            return xy.copy(), np.zeros(len(xy), bool)
        size = (self.config.window, self.config.window)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(before, after, local, None, winSize=size,
                                                   maxLevel=self.config.levels, criteria=self._criteria)
        inside = (moved[:, 0] >= 0).all(axis=1) & (moved[:, 0, 0] < after.shape[1]) & (moved[:, 0, 1] < after.shape[0])
        back = (moved.reshape(-1, 2).astype(np.float64) + 0.5) / scale - 0.5 + (x0, y0)
        return back, status.reshape(-1).astype(bool) & inside


class DriverLandmarks:
    """The landmarks stage for a driver video: MediaPipe in tracking mode, then :class:`PointTracker`.
    A context manager; ``close()`` releases MediaPipe."""

    def __init__(self, config: PointTrackingConfig | None = None) -> None:
        self.detector = LandmarkDetector(video=True)
        self.tracker = PointTracker(config)

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """The largest face's steadied landmarks in ``rgb`` ((H, W, 3) uint8, frames in order), or None."""
        return self.tracker.update(self.detector.detect(rgb), rgb)

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> DriverLandmarks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
