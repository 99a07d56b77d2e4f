"""Where live frames go: the virtual camera (pyvirtualcam), a recording, or nowhere (benchmarks).

The preview window is not a sink here: windows belong to the main thread, so :mod:`livefake.live`
hands it frames through a queue and draws it there. Every sink takes (H, W, 3) uint8 RGB frames of the
size it was opened with.
"""

from __future__ import annotations

import logging
import platform
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from livefake.errors import LivefakeError

log = logging.getLogger("livefake")


class Sink(ABC):
    name = ""

    @abstractmethod
    def send(self, frame: np.ndarray, captured_at: float) -> None:
        """Publish one frame; ``captured_at`` is when its driving frame was captured (perf_counter)."""

    def close(self) -> None:
        return None


def virtual_camera_help(system: str | None = None) -> str:
    """What to do when no virtual camera can be opened, for this operating system."""
    system = system or platform.system()
    if system == "Linux":
        return ("install v4l2loopback and load it: 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                "card_label=livefake' (package v4l2loopback-dkms on Debian and Ubuntu)")
    if system in ("Windows", "Darwin"):
        return "install OBS Studio 28 or newer and start its Virtual Camera once, then stop it"
    return "this system has no virtual camera that pyvirtualcam supports"


class VirtualCameraSink(Sink):
    """The output as a webcam that Zoom, Meet, Teams or OBS can pick (v4l2loopback on Linux, OBS's
    virtual camera on Windows and macOS; pyvirtualcam chooses)."""

    name = "virtual camera"

    def __init__(self, width: int, height: int, fps: float, device: str | None = None) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise LivefakeError("pyvirtualcam is missing; 'pip install pyvirtualcam' (livefake installs it)") from None
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device)
        except RuntimeError as err:
            # pyvirtualcam says which backend failed and why: keep its first sentence.
            why = (str(err).split(": ", 1)[-1].split(". ")[0] if str(err) else type(err).__name__).rstrip(".")
            raise LivefakeError(f"no virtual camera ({why}); {virtual_camera_help()}") from None
        self.device = self.camera.device
        log.warning("virtual camera: %s (%dx%d at %g fps)", self.device, width, height, fps)

    def send(self, frame: np.ndarray, captured_at: float) -> None:
        self.camera.send(frame)

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None


class RecordSink(Sink):
    """An H.264 MP4 of what was published, each frame at its capture time."""

    name = "recording"

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        from fractions import Fraction

        from livefake.provenance import file_tags
        from livefake.video_io import VideoWriter

        self.path = path
        self._writer = VideoWriter(path, width, height, Fraction(fps).limit_denominator(1001),
                                   metadata=file_tags("live face reenactment"))
        self._t0: float | None = None
        self._last = -1.0

    def send(self, frame: np.ndarray, captured_at: float) -> None:
        if self._t0 is None:
            self._t0 = captured_at
        t = max(captured_at - self._t0, self._last + 1e-3)  # repeats get their own, later time
        self._last = t
        self._writer.write(frame, t)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            log.warning("recorded %s", self.path)


class NullSink(Sink):
    """Drops frames (benchmarks: the latency benchmark reads each frame's id stamp in the output stage)."""

    name = "null"

    def send(self, frame: np.ndarray, captured_at: float) -> None:
        return None
