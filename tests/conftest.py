"""Shared fixtures: the real faces of ../shared/faces (tests that need them skip when it is absent)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

FACES = Path(os.environ.get("LIVEFAKE_FACES") or Path(__file__).resolve().parents[1].parent / "shared" / "faces")
IMAGES = ("astronaut.png", "glasses_dim.jpg", "mouth_open.jpg", "roll_hand.jpg", "o_mouth.jpg")
CLIPS = ("mouth_open.mp4", "rotation.mp4", "harsh_light.mp4", "glasses.mp4", "talking.mp4")


def face_file(kind: str, name: str) -> Path:
    """Path of a shared test face (kind 'images' or 'videos'); skips the test when the folder is absent."""
    path = FACES / kind / name
    if not path.is_file():
        pytest.skip(f"shared test faces not found at {FACES} (they sit beside the checkout in CI)")
    return path


@functools.cache
def clip_frames(name: str, max_frames: int | None = None) -> tuple[np.ndarray, ...]:
    """Decoded RGB frames of a shared clip (cached for the session); OpenCV where PyAV is missing (the
    GPU machine's check carries no PyAV)."""
    try:
        from livefake.video_io import VideoReader
    except ImportError:
        import cv2

        cap, frames = cv2.VideoCapture(str(face_file("videos", name))), []
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        return tuple(frames)
    with VideoReader(face_file("videos", name), max_frames=max_frames) as reader:
        return tuple(f.rgb for f in reader)


@functools.cache
def clip_landmarks(name: str, max_frames: int | None = None) -> tuple[np.ndarray | None, ...]:
    """Tracked (478, 3) landmarks of each frame of a shared clip, None where no face (cached)."""
    from livefake.landmarks import LandmarkDetector

    with LandmarkDetector(video=True) as detector:
        out = []
        for rgb in clip_frames(name, max_frames):
            face = detector.detect(rgb)
            out.append(None if face is None else face.points)
        return tuple(out)


@functools.cache
def prepared(name: str, crop_size: int = 256, output_size: tuple[int, int] | None = None):  # noqa: ANN201
    """The shared photo ``name`` prepared as a source (a PreparedSource; imported lazily)."""
    from livefake.source import prepare_source

    return prepare_source(face_file("images", name), crop_size=crop_size, output_size=output_size)


def measure_faces(frames: list[np.ndarray] | tuple[np.ndarray, ...]) -> list[np.ndarray | None]:
    """MediaPipe landmarks (tracking) of each frame, as a separate judge of what frames show."""
    from livefake.landmarks import LandmarkDetector

    with LandmarkDetector(video=True) as detector:
        results = [detector.detect(np.ascontiguousarray(f)) for f in frames]
    return [None if r is None else r.points for r in results]
