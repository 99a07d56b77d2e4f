"""Capture: where the live app's driving frames come from, through OpenCV.

:class:`CameraSource` is a webcam (an index or a device path) asked for a resolution and frame rate,
with the driver's buffer kept at one frame; when the camera vanishes it says so once and reconnects
with growing pauses while the sinks keep showing the last good frame. :class:`ClipSource` plays a video
file as a stand-in for a webcam, at the clip's own frame rate (or unpaced, for throughput), looping.
Both give RGB frames; ``read()`` returns None when no frame is ready (a lost camera).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from livefake.errors import LivefakeError

log = logging.getLogger("livefake")

CaptureFactory = Callable[[int | str], cv2.VideoCapture]


def list_cameras(max_index: int = 8) -> str:
    """The webcams OpenCV can open at indices 0 to ``max_index - 1``, one line each."""
    lines = []
    for index in range(max_index):
        cap = _open_camera(index)
        if cap.isOpened():
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            lines.append(f"{index:3d}  {w}x{h}")
        cap.release()
    return "\n".join(lines) if lines else f"  none at indices 0-{max_index - 1}"


class FrameSource(ABC):
    """A live source of RGB frames."""

    fps: float = 30.0
    ended: bool = False  # a clip that does not loop has played out
    paced_wait_s: float = 0.0  # how long the last read slept to keep a clip's pace (not service time)

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next (H, W, 3) uint8 RGB frame, or None when none is ready (call again)."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""
        return None


def _rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _open_camera(device: int | str) -> cv2.VideoCapture:
    # OpenCV logs its own warnings for a missing camera; livefake says it once, in its own words.
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent
    try:
        return cv2.VideoCapture(device)
    finally:
        cv2.setLogLevel(level)


class CameraSource(FrameSource):
    """A webcam. ``device``: an index (0 is the default camera) or a path such as /dev/video2."""

    def __init__(self, device: int | str = 0, width: int = 640, height: int = 480, fps: float = 30.0,
                 open_capture: CaptureFactory = _open_camera, max_backoff_s: float = 4.0) -> None:
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self._open = open_capture
        self._max_backoff = max_backoff_s
        self._backoff = 0.25
        self._retry_at = 0.0
        self.reconnects = 0
        self._cap: cv2.VideoCapture | None = self._connect()
        if self._cap is None:
            raise LivefakeError(
                f"no webcam at {device!r}; plug one in, pick another with --camera INDEX|PATH, "
                "or drive from a video with --driving FILE"
            )

    def _connect(self) -> cv2.VideoCapture | None:
        cap = self._open(self.device)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued in the driver
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        got = cap.get(cv2.CAP_PROP_FPS)
        if got and 1 <= got <= 240:
            self.fps = float(got)
        return cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            now = time.monotonic()
            if now < self._retry_at:
                time.sleep(min(0.05, self._retry_at - now))
                return None
            self._cap = self._connect()
            if self._cap is None:
                self._retry_at = now + self._backoff
                self._backoff = min(self._backoff * 2, self._max_backoff)
                return None
            self.reconnects += 1
            self._backoff = 0.25
            log.warning("camera %r is back", self.device)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            log.warning("camera %r stopped giving frames; showing the last frame and reconnecting", self.device)
            self._cap.release()
            self._cap = None
            self._retry_at = time.monotonic() + self._backoff
            return None
        return _rgb(bgr)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ClipSource(FrameSource):
    """A video file played as a webcam: paced at its own frame rate (or ``fps``), or unpaced; looping."""

    def __init__(self, path: str | Path, *, paced: bool = True, loop: bool = True, fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise LivefakeError(f"driving video '{path}' not found; check the path")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise LivefakeError(f"cannot read '{path}' as a video; use an MP4, MOV, MKV, WebM or AVI file")
        native = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (native if native and 1 <= native <= 240 else 30.0))
        self.paced, self.loop = paced, loop
        self.frames_read = 0
        self._start: float | None = None

    def read(self) -> np.ndarray | None:
        if self.ended:
            return None
        if self.paced:
            if self._start is None:
                self._start = time.perf_counter()
            due = self._start + self.frames_read / self.fps
            delay = due - time.perf_counter()
            self.paced_wait_s = max(delay, 0.0)
            if delay > 0:
                time.sleep(delay)
        ok, bgr = self._cap.read()
        if not ok and self.loop and self.frames_read > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.frames_read == 0:
                raise LivefakeError(f"'{self.path}' has no readable video frames; re-encode it or use another")
            self.ended = True
            return None
        self.frames_read += 1
        return _rgb(bgr)

    def close(self) -> None:
        self._cap.release()
