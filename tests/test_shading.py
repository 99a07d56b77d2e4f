"""Shading transfer: the driver's change of light, measured against its neutral frame, reaches the output."""

from __future__ import annotations

import numpy as np
from conftest import clip_frames, prepared

from livefake import face_regions as fr
from livefake.landmarks import LandmarkDetector
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.shading import ShadingConfig
from livefake.source import prepare_source

OFF = ReenactConfig(shading=ShadingConfig(enabled=False))


def face_mse(fake: np.ndarray, real: np.ndarray, points: np.ndarray) -> float:
    import cv2

    mask = np.zeros(real.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points[list(fr.FACE_OVAL), :2].astype(np.int32)), 1)
    return float(np.mean((fake.astype(np.float64) - real)[mask.astype(bool)] ** 2))


def test_shading_brings_self_reenactment_closer_to_the_real_frames():
    """The clip's first frame animated by the clip itself: as she leans towards the camera her face catches
    more light; with the shading each later frame is nearer the real one inside the face."""
    frames = clip_frames("talking.mp4", 120)
    first = prepare_source(frames[0], name="talking.mp4 frame 0")
    errors = {}
    for name, config in (("with", ReenactConfig()), ("without", OFF)):
        with Reenactor(first, config) as r, LandmarkDetector(video=True) as det:
            errors[name] = []
            for i, frame in enumerate(frames):
                out = r.process(frame, i / 30).frame
                real = det.detect(frame)
                if i >= 30 and i % 3 == 0 and real is not None:
                    errors[name].append(face_mse(out, frame, real.points))
    with_shading, without = np.array(errors["with"]), np.array(errors["without"])
    gain_db = 10 * np.log10(without.mean() / with_shading.mean())
    assert gain_db > 0.4  # 0.75 dB on this machine
    assert np.mean(with_shading < without) > 0.9  # nearer on (almost) every frame, not on average alone


def test_light_falling_on_one_side_of_the_driver_shades_that_side_of_the_source():
    """A still driver whose image-left half darkens to 0.6 (a lamp switched off): the source's face darkens
    on that side, keeps its light on the other, and the photo around the crop stays as it was."""
    still = clip_frames("mouth_open.mp4", 1)[0]
    dark = still.astype(np.float32)
    dark[:, : still.shape[1] // 2] *= 0.6
    dark = dark.astype(np.uint8)
    src = prepared("astronaut.png")
    with Reenactor(src) as r:
        for i in range(10):
            neutral = r.process(still, i / 30)
        shaded = r.process(dark, 10 / 30)
        x0, y0, x1, y1 = r.compositor.box
    p = src.points
    # Cheek patches in the crop: the subject's right cheek sits on the image's left.
    def cheek(crop: np.ndarray, index: int) -> float:
        x, y = np.round(p[index, :2]).astype(int)
        return float(crop[y - 6 : y + 7, x - 6 : x + 7].mean())

    left, right = 205, 425  # cheek landmarks, image-left and image-right
    assert cheek(shaded.crop, left) < 0.85 * cheek(neutral.crop, left)
    assert abs(cheek(shaded.crop, right) / cheek(neutral.crop, right) - 1) < 0.08
    outside = np.ones(src.photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(shaded.frame[outside], neutral.frame[outside])


def test_shading_fades_to_nothing_while_the_face_is_lost():
    frames = clip_frames("talking.mp4", 60)
    src = prepared("glasses_dim.jpg")
    with Reenactor(src) as r:
        for i, frame in enumerate(frames):
            moving = r.plan_frame(frame, i / 30)
        lost = [r.plan_frame(np.zeros_like(frames[0]), (60 + i) / 30) for i in range(40)]
    assert np.abs(moving.shading - 1).max() > 0.02  # the clip's light does change
    assert np.abs(lost[0].shading - 1).max() > 0.01  # no jump on the first lost frame ...
    assert np.abs(lost[-1].shading - 1).max() < 1e-2  # ... and gone a second later
