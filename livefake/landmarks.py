"""Landmarks stage: MediaPipe face mesh (refined, 478 points with iris) in pixel coordinates."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and below stay quiet
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side prints start-up notices ("Created TensorFlow Lite XNNPACK delegate", feedback
    tensor warnings) straight to file descriptor 2; hide them while the graph starts."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _normalized_points(face: object, count: int) -> np.ndarray:
    """(count, 3) float32 normalised x, y, z of a MediaPipe NormalizedLandmarkList.

    Read from the message's wire bytes in one numpy step where each landmark is exactly x, y, z (17 bytes:
    tag and length, then three tagged float32s): a Python loop over 478 landmarks holds the interpreter
    lock for about 0.4 ms a frame, which the other stages of the live pipeline wait for. Any other layout
    takes the loop.
    """
    raw = np.frombuffer(face.SerializeToString(), np.uint8)  # type: ignore[attr-defined]
    if raw.size == 17 * count:
        rows = raw.reshape(count, 17)
        if (np.all(rows[:, :3] == (0x0A, 0x0F, 0x0D)) and np.all(rows[:, 7] == 0x15)
                and np.all(rows[:, 12] == 0x1D)):
            floats = np.ascontiguousarray(rows[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]])
            return floats.view("<f4").reshape(count, 3).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's landmarks.

    ``points``: (478, 3) float32 in pixels of the analysed image: x right, y down, z depth in the
    same pixel units as x (MediaPipe's normalised z times the image width; smaller is nearer).
    ``faces_found``: how many faces the detector saw; ``points`` belongs to the largest.
    ``steady``: (478,) bool, the points that :mod:`livefake.point_tracking` filtered (carried by the flow,
    or by MediaPipe's motion where the flow was lost; the retargeter does not smooth them again);
    ``None``: MediaPipe's points as they came.
    """

    points: np.ndarray
    image_width: int
    image_height: int
    faces_found: int = 1
    steady: np.ndarray | None = None

    def outside_fraction(self) -> float:
        """Fraction of the 478 points that lie outside the image (a face cut by the edge)."""
        x, y = self.points[:, 0], self.points[:, 1]
        out = (x < 0) | (y < 0) | (x > self.image_width - 1) | (y > self.image_height - 1)
        return float(out.mean())


class LandmarkDetector:
    """MediaPipe face mesh. ``video=True`` tracks across frames (fast); ``False`` treats each image alone.

    Use as a context manager, or call :meth:`close` (safe twice).
    """

    def __init__(self, *, video: bool, max_faces: int = 1, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self.video = video
        # The graph's calculators print their notices as they start: the landmark model only once a face
        # is first found. Keep fd 2 quiet until then (at most 60 frames), and for two frames after.
        self._quiet_calls = 60
        with _native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not video,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the largest face in ``rgb`` ((H, W, 3) uint8 RGB), or ``None`` with no face."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if self._mesh is None:
            raise RuntimeError("LandmarkDetector is closed")
        if self._quiet_calls <= 0:
            result = self._mesh.process(rgb)
        else:  # the first frames start the graph's calculators, which print notices
            with _native_stderr_silenced():
                result = self._mesh.process(rgb)
            self._quiet_calls = min(self._quiet_calls - 1, 2) if result.multi_face_landmarks else self._quiet_calls - 1
        faces = result.multi_face_landmarks
        if not faces:
            return None
        h, w = rgb.shape[:2]
        scale = np.array([w, h, w], np.float32)
        all_points = [_normalized_points(face, len(face.landmark)) * scale for face in faces]
        largest = max(all_points, key=lambda pts: float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])))
        return FaceLandmarks(points=largest, image_width=w, image_height=h, faces_found=len(faces))

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
