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
and a fifth short). These keep MediaPipe's points and the retargeter's One-Euro smoothing (which skips the
followed ones: they are filtered here). A point whose flow is lost, or lands farther than ``max_gap``
from MediaPipe's, is carried by MediaPipe's own motion for that frame instead of jumping onto its point.

A face newly found is fitted again on its own frame until the fit settles. MediaPipe's first fit starts
from its face detector's box, every later one from the last fit's: on the shared clips the fit settles
0.65-1.5 px (mean over the mesh) from where it first lands, and the frames after it are fitted from the
settled place. The first face is the retargeter's reference, so an unsettled one put that offset into every
frame's motion (talking.mp4 reenacting its own first frame: the output sat 1.4 px from the real frames on
average by optical flow over the face, 0.9 px settled).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.landmarks import FaceLandmarks, LandmarkDetector
from livefake.warp import CONTROL_LANDMARKS

# Points whose look changes with the expression (the lips, the eyes' lids, the irises) and the outline.
_UNTRACKED = frozenset(fr.LIPS_INNER) | frozenset(fr.LIPS_OUTER) | frozenset(fr.RIGHT_EYE) \
    | frozenset(fr.LEFT_EYE) | frozenset(fr.RIGHT_IRIS) | frozenset(fr.LEFT_IRIS) | frozenset(fr.FACE_OVAL)
# Of the other skin points, those the later stages read: the warp's spline centres (the shading's too)
# and the rigid points the head pose is fitted to. The rest of the mesh changes no output, and following
# it too would cost the flow four times as much (80 points instead of 360).
TRACKED = np.array([i in (set(CONTROL_LANDMARKS) | set(fr.RIGID)) - _UNTRACKED for i in range(478)])


@dataclass(frozen=True)
class PointTrackingConfig:
    """``enabled``: steady the driver's skin points by the flow; ``gain``: the share of the way to
    MediaPipe's point taken each frame (1: MediaPipe's points, left unsmoothed); ``max_side``: the face
    region is scaled to at most this side for the flow; ``window``, ``levels``: Lucas-Kanade window (px)
    and pyramid levels; ``max_gap``: farther than this from MediaPipe's point (interocular distances) the
    flow is not trusted; ``settle``: at most this many extra fits of the frame a face is first found on,
    stopping once its points move under ``settled_px`` (frame pixels) on average (0: MediaPipe's first fit as
    it is; each time the face is found again, up to that many more MediaPipe calls on that one frame)."""

    enabled: bool = True
    gain: float = 0.1
    max_side: int = 128
    window: int = 11
    levels: int = 2
    max_gap: float = 0.1
    settle: int = 4
    settled_px: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.gain <= 1:
            raise ValueError(f"gain must be in (0, 1], got {self.gain}")
        if self.max_side < 64 or self.window < 5 or self.levels < 0 or self.settle < 0:
            raise ValueError(f"expected max_side >= 64, window >= 5, levels >= 0, settle >= 0, got {self}")


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
        self._measured: np.ndarray | None = None  # (478, 3) MediaPipe's on the last frame
        self._region: _Region | None = None  # where the flow looks
        self._frame_shape: tuple[int, ...] | None = None
        self.held = 0.0  # the share of the followed points the flow held on the last frame

    def update(self, face: FaceLandmarks | None, rgb: np.ndarray) -> FaceLandmarks | None:
        """``face`` (MediaPipe's landmarks of ``rgb``) with its skin points steadied; ``None`` stays None
        and starts over."""
        if face is None or not self.config.enabled:
            self.reset()
            return face
        if rgb.shape != self._frame_shape:  # a new frame size (another camera mode) starts over
            self.reset()
            self._frame_shape = rgb.shape
        measured = face.points.astype(np.float64)
        points = measured.copy()
        steady = np.zeros(len(points), bool)
        gray = None
        if self._points is not None and self._measured is not None and self._region is not None \
                and self._gray is not None:
            gray = self._region.cut(rgb)
            last = self._points[TRACKED, :2]
            carried, ok = self._flow(self._gray, gray, last, self._region)
            mp = measured[TRACKED, :2]
            trusted = ok & (np.linalg.norm(carried - mp, axis=1) < self.config.max_gap * fr.interocular(measured))
            # Where the flow is lost, MediaPipe's own motion carries the point instead: it then glides onto
            # MediaPipe's point as the others do, rather than jumping there (up to max_gap).
            carried[~trusted] = last[~trusted] + mp[~trusted] - self._measured[TRACKED, :2][~trusted]
            points[TRACKED, :2] = carried + self.config.gain * (mp - carried)
            steady[TRACKED] = True
            self.held = float(trusted.mean())
        region = self._face_region(points, rgb.shape)
        if region != self._region or gray is None:  # the region holds while the face stays well inside it
            self._region, gray = region, region.cut(rgb)
        self._gray, self._points, self._measured = gray, points, measured
        return replace(face, points=points.astype(np.float32), steady=steady)

    def _face_region(self, points: np.ndarray, shape: tuple[int, ...]) -> _Region:
        """The face's box with a margin for the motion to the next frame, brought within ``max_side``: the
        last one while the face keeps a tenth of its size inside it and fills most of it."""
        low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        size = float((high - low).max())
        if self._region is not None:
            last, inner = self._region, 0.1 * size
            inside = bool((low >= (last.x0 + inner, last.y0 + inner)).all()
                          and (high <= (last.x1 - inner, last.y1 - inner)).all())
            if inside and max(last.x1 - last.x0, last.y1 - last.y0) < 1.8 * size:
                return last
        margin = 0.2 * size
        # Within the frame, at least a pixel, even for a face MediaPipe places partly outside it.
        x0, y0 = (int(np.clip(v, 0, n - 1)) for v, n in zip(low - margin, (shape[1], shape[0])))
        x1, y1 = (int(np.clip(v + 1, x + 1, n)) for v, x, n in zip(high + margin, (x0, y0), (shape[1], shape[0])))
        return _Region.within(x0, y0, x1, y1, self.config.max_side)

    def _flow(self, before: np.ndarray, after: np.ndarray, xy: np.ndarray, region: _Region
              ) -> tuple[np.ndarray, np.ndarray]:
        """Where the flow carries frame-pixel points ``xy`` (N, 2) from ``before`` to ``after`` (both cut
        by ``region``, so of one size), and which it followed."""
        size = (self.config.window, self.config.window)
        local = region.to_local(xy).astype(np.float32).reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(before, after, local, None, winSize=size,
                                                   maxLevel=self.config.levels, criteria=self._criteria)
        moved = moved.reshape(-1, 2)
        inside = (moved >= 0).all(axis=1) & (moved[:, 0] < after.shape[1]) & (moved[:, 1] < after.shape[0])
        return region.to_frame(moved.astype(np.float64)), status.reshape(-1).astype(bool) & inside


@dataclass(frozen=True)
class _Region:
    """Where the flow looks: the face's box (x0, y0)-(x1, y1) in frame pixels, halved ``halvings`` times
    (cv2.pyrDown: a Gaussian, then every other pixel; a tenth of the time of an area resize) and then
    resized to (``width``, ``height``)."""

    x0: int
    y0: int
    x1: int
    y1: int
    halvings: int
    width: int
    height: int

    @classmethod
    def within(cls, x0: int, y0: int, x1: int, y1: int, max_side: int) -> _Region:
        side = max(x1 - x0, y1 - y0)
        halvings = 0
        while side >= max_side * 2 ** (halvings + 1):
            halvings += 1
        scale = min(1.0, max_side / side)
        return cls(x0, y0, x1, y1, halvings, max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))

    def _halved(self) -> np.ndarray:
        """(width, height) after the halvings (pyrDown rounds odd sides up)."""
        size = np.array([self.x1 - self.x0, self.y1 - self.y0])
        for _ in range(self.halvings):
            size = (size + 1) // 2
        return size

    def cut(self, rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(rgb[self.y0:self.y1, self.x0:self.x1], cv2.COLOR_RGB2GRAY)
        for _ in range(self.halvings):
            gray = cv2.pyrDown(gray)
        if gray.shape != (self.height, self.width):
            gray = cv2.resize(gray, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return gray

    def to_local(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixels to the cut's: pyrDown centres pixel i on pixel 2i of the level below it, the resize
        maps pixel centres as (x + 0.5) * scale - 0.5."""
        scale = np.array([self.width, self.height]) / self._halved()
        return ((xy - (self.x0, self.y0)) / 2 ** self.halvings + 0.5) * scale - 0.5

    def to_frame(self, local: np.ndarray) -> np.ndarray:
        scale = np.array([self.width, self.height]) / self._halved()
        return ((local + 0.5) / scale - 0.5) * 2 ** self.halvings + (self.x0, self.y0)


class DriverLandmarks:
    """The landmarks stage for a driver video: MediaPipe in tracking mode, then :class:`PointTracker`.
    A context manager; ``close()`` releases MediaPipe."""

    def __init__(self, config: PointTrackingConfig | None = None) -> None:
        self.config = config or PointTrackingConfig()
        self.detector = LandmarkDetector(video=True)
        self.tracker = PointTracker(self.config)
        self._found = False

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """The largest face's steadied landmarks in ``rgb`` ((H, W, 3) uint8, frames in order), or None."""
        face = self.detector.detect(rgb)
        if face is not None and not self._found:
            face = self._settle(face, rgb)
        self._found = face is not None
        return self.tracker.update(face, rgb)

    def _settle(self, face: FaceLandmarks, rgb: np.ndarray) -> FaceLandmarks:
        """``face``, MediaPipe's first fit of ``rgb``, fitted again from its own place until it settles."""
        for _ in range(self.config.settle):
            again = self.detector.detect(rgb)
            if again is None:
                break
            moved = float(np.linalg.norm(again.points[:, :2] - face.points[:, :2], axis=1).mean())
            face = again
            if moved < self.config.settled_px:
                break
        return face

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> DriverLandmarks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
