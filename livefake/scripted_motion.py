"""A built-in driver for ``livefake demo``: landmarks that talk, blink, smile, look aside, turn and tilt
the head.

It starts from the source's own landmarks (so the first frame is the neutral reference) and moves them
by a fixed script, producing what the landmark stage would produce from a real driving video.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from livefake import face_regions as fr
from livefake.landmarks import FaceLandmarks
from livefake.retarget import rotation_from_euler


def _bump(t: float, start: float, end: float) -> float:
    """0 outside [start, end], rising smoothly to 1 in the middle."""
    if not start < t < end:
        return 0.0
    return float(np.sin(np.pi * (t - start) / (end - start)) ** 2)


def script(t: float) -> dict[str, float]:
    """The scripted face at ``t`` seconds: mouth, blink, smile in [0, 1]; gaze in eye widths (to the image's
    right); yaw, pitch, roll in degrees."""
    talk = _bump(t, 0.2, 2.8) + 0.7 * _bump(t, 6.2, 7.9)
    mouth = talk * max(0.0, np.sin(2 * np.pi * 2.2 * t)) * (0.45 + 0.55 * abs(np.sin(2 * np.pi * 0.45 * t)))
    blink = max(_bump(t, 1.3, 1.55), _bump(t, 3.4, 3.65), _bump(t, 6.0, 6.25))
    return {
        "mouth": float(mouth),
        "blink": blink,
        "smile": _bump(t, 2.7, 4.3),
        "gaze": 0.18 * np.sin(2 * np.pi * (t - 0.2)) * (0.2 < t < 1.2),
        "yaw": 18.0 * np.sin(2 * np.pi * (t - 4.2) / 1.8) * (4.2 < t < 6.0),
        "pitch": 9.0 * np.sin(2 * np.pi * (t - 6.0) / 2.0) * (6.0 < t < 8.0),
        "roll": 14.0 * np.sin(2 * np.pi * (t - 6.0) / 2.0 + 0.6) * _bump(t, 5.9, 8.0),
    }


def pose_face(neutral: np.ndarray, state: dict[str, float]) -> np.ndarray:
    """Move (478, 3) neutral landmarks (pixels) to the scripted ``state``; returns a new array."""
    p = neutral.astype(np.float64).copy()
    iod = fr.interocular(neutral)
    down = fr.down_axis(p)
    along = (p[:, :2] - p[13, :2]) @ down  # distance below the upper inner lip, in pixels
    across = np.abs((p[:, :2] - p[13, :2]) @ np.array([-down[1], down[0]]))
    # Jaw: everything below the lips' parting line drops, fading out towards the cheeks.
    lower = np.clip(along / (0.08 * iod), 0, 1) * np.clip(1.3 - across / (0.9 * iod), 0, 1)
    lower[[q[1] for q in fr.LIPS_INNER_PAIRS]] = 1.0
    p[:, :2] += (state["mouth"] * 0.42 * iod * lower)[:, None] * down
    # Smile: mouth corners out and up.
    for corner, side in zip(fr.OUTER_MOUTH_CORNERS, (-1.0, 1.0)):
        weight = np.exp(-np.sum((neutral[:, :2] - neutral[corner, :2]) ** 2, axis=1) / (2 * (0.22 * iod) ** 2))
        shift = state["smile"] * iod * (0.07 * side * np.array([-down[1], down[0]]) - 0.06 * down)
        p[:, :2] += weight[:, None] * shift
    # Blink: upper lids down onto the lower lids.
    for upper, lower_lid in fr.RIGHT_EYE_LID_PAIRS + fr.LEFT_EYE_LID_PAIRS:
        p[upper] += 0.92 * state["blink"] * (p[lower_lid] - p[upper])
    # Gaze: both irises slide along their eyes.
    for iris, (a, b) in ((fr.RIGHT_IRIS, fr.RIGHT_EYE_CORNERS), (fr.LEFT_IRIS, fr.LEFT_EYE_CORNERS)):
        p[list(iris), :2] += state["gaze"] * (neutral[b, :2] - neutral[a, :2])
    centre = p[list(fr.RIGID)].mean(axis=0)
    rot = rotation_from_euler(state["yaw"], state["pitch"], state["roll"])
    return (p - centre) @ rot.T + centre


class ScriptedDriver:
    """Iterates ``(t, FaceLandmarks)`` at ``fps`` for ``seconds``, starting from ``neutral`` ((478, 3) px)."""

    def __init__(self, neutral: np.ndarray, width: int, height: int, *, fps: int = 30, seconds: float = 8.0):
        self.neutral = neutral
        self.width, self.height = width, height
        self.fps = fps
        self.frames = int(round(seconds * fps))

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[tuple[float, FaceLandmarks]]:
        for i in range(self.frames):
            t = i / self.fps
            points = pose_face(self.neutral, script(t)).astype(np.float32)
            yield t, FaceLandmarks(points=points, image_width=self.width, image_height=self.height)
