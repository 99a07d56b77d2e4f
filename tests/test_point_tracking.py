"""The driver's skin points steadied by the optical flow, on real clips: less wander where the face is
still, no drift from MediaPipe while the head turns, lips and eyes left as MediaPipe sees them."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from conftest import clip_frames

from livefake import face_regions as fr
from livefake.landmarks import LandmarkDetector
from livefake.point_tracking import TRACKED, DriverLandmarks, PointTracker, PointTrackingConfig, _Region
from livefake.retarget import euler_from_rotation, head_pose


def _track(clip: str, frames: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[float]]:
    """MediaPipe's (T, 478, 3) points of a clip, the steadied ones, each frame's steady mask and the share
    of the followed points the flow held."""
    tracker = PointTracker()
    raw, shown, steady, held = [], [], [], []
    with LandmarkDetector(video=True) as detector:
        for rgb in clip_frames(clip, frames):
            face = detector.detect(rgb)
            out = tracker.update(face, rgb)
            assert face is not None and out is not None
            raw.append(face.points.astype(np.float64))
            shown.append(out.points.astype(np.float64))
            steady.append(out.steady)
            held.append(tracker.held)
    return np.array(raw), np.array(shown), steady, held


def _wander(points: np.ndarray) -> float:
    """Mean second difference of the skin points over frames (px): still or smooth motion gives ~0."""
    return float(np.linalg.norm(np.diff(points[:, TRACKED], 2, axis=0), axis=2).mean())


def test_a_still_face_wanders_less_and_the_lips_and_eyes_stay_mediapipes():
    """glasses.mp4 barely moves: MediaPipe's skin points wander 0.9 px per frame; steadied, under 0.6 of it."""
    raw, shown, steady, held = _track("glasses.mp4", 120)
    raw, shown = raw[..., :2], shown[..., :2]
    assert _wander(shown) < 0.6 * _wander(raw)
    assert np.mean(held[1:]) > 0.9  # the flow held nearly every followed point
    assert not steady[0].any() and all((s == TRACKED).all() for s in steady[1:])  # the first frame: MediaPipe's
    np.testing.assert_array_equal(shown[:, ~TRACKED], raw[:, ~TRACKED])
    assert not TRACKED[list(fr.LIPS_INNER) + list(fr.RIGHT_EYE) + list(fr.LEFT_IRIS) + list(fr.FACE_OVAL)].any()


def test_a_turning_head_keeps_the_steadied_points_with_mediapipe():
    """rotation.mp4 rolls and turns the head: the steadied points follow it (no drift), within a few
    hundredths of the eye distance of MediaPipe's on average."""
    raw, shown, _, _ = _track("rotation.mp4", 150)
    raw, shown = raw[..., :2], shown[..., :2]
    iod = fr.interocular(raw[0])
    gap = np.linalg.norm(shown - raw, axis=2)[:, TRACKED] / iod
    motion = np.linalg.norm(raw[-1] - raw[0], axis=1)[TRACKED].mean() / iod
    assert motion > 0.2  # the head did move
    assert gap.mean() < 0.03


def test_the_steadied_points_turn_the_head_as_mediapipe_sees_it():
    """talking.mp4 turns, nods and tilts by 7-17 degrees: the head pose fitted to the steadied points follows
    the one fitted to MediaPipe's, in step and nearly in full (the outline, if the flow carried it, dragged
    the roll two frames late and a fifth short)."""
    raw, shown, _, _ = _track("talking.mp4", 300)
    before = np.array([euler_from_rotation(head_pose(p, raw[0])[1]) for p in raw])
    after = np.array([euler_from_rotation(head_pose(p, shown[0])[1]) for p in shown])
    for k in range(3):
        assert np.ptp(before[:, k]) > 5
        lagged = [np.corrcoef(before[: len(before) - lag, k], after[lag:, k])[0, 1] for lag in range(4)]
        assert lagged[0] > 0.98 and int(np.argmax(lagged)) == 0
        assert np.ptp(after[:, k]) > 0.85 * np.ptp(before[:, k])


def test_a_newly_found_face_starts_where_mediapipes_tracking_settles():
    """glasses.mp4 holds still: MediaPipe's first fit of its first frame lands 1.4 px from where its
    tracking settles, so the lips, eyes and outline (MediaPipe's own points) jumped that far to the second
    frame. Settled, the first face is taken where the tracking holds it and the jump is a few tenths."""
    frames = clip_frames("glasses.mp4", 2)
    with LandmarkDetector(video=True) as detector:
        fits = [detector.detect(frames[0]) for _ in range(8)]  # the same frame, fitted from the last fit
    assert all(f is not None for f in fits)
    settled_place = fits[-1].points[:, :2]

    def first_two(config: PointTrackingConfig) -> list[np.ndarray]:
        with DriverLandmarks(config) as landmarks:
            faces = [landmarks.detect(rgb) for rgb in frames]
        assert all(f is not None for f in faces)
        return [f.points[:, :2] for f in faces]

    def off(points: np.ndarray) -> float:
        return float(np.linalg.norm(points - settled_place, axis=1).mean())

    def jump(first: np.ndarray, second: np.ndarray) -> float:  # of MediaPipe's own points
        return float(np.linalg.norm(second - first, axis=1)[~TRACKED].mean())

    settled, unsettled = first_two(PointTrackingConfig()), first_two(PointTrackingConfig(settle=0))
    assert off(settled[0]) < 0.3 < 1.0 < off(unsettled[0])
    assert jump(*settled) < 0.5 < 1.0 < jump(*unsettled)


def test_the_face_region_maps_frame_pixels_exactly_and_the_flow_recovers_a_known_shift():
    """The region is halved and resized before the flow; a ramp whose value is its own frame coordinate,
    cut the same way and sampled where ``to_local`` puts a point, gives back that point's coordinate (so the
    mapping is right in absolute terms, not only invertible). Then a textured frame moved by (3.5, -2.25)
    px: the flow reports that shift in frame pixels."""
    region = _Region.within(40, 30, 381, 400, PointTrackingConfig().max_side)
    assert region.halvings == 1 and max(region.width, region.height) == 128
    points = np.array([[90.0, 120.0], [200.0, 250.0], [251.5, 180.25], [320.0, 330.0]])
    ys, xs = np.mgrid[0:480, 0:480].astype(np.float32)
    for axis, ramp in enumerate((xs, ys)):
        cut = region.cut(np.repeat(ramp[..., None], 3, axis=2))
        local = region.to_local(points).astype(np.float32)
        sampled = cv2.remap(cut, local[:, 0][None], local[:, 1][None], cv2.INTER_LINEAR)[0]
        # remap places a sample to 1/32 of a cut pixel (2.7 frame px here): 0.1 px leaves room for that only
        np.testing.assert_allclose(sampled, points[:, axis], atol=0.1)
    np.testing.assert_allclose(region.to_frame(region.to_local(points)), points, atol=1e-9)
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((480, 480)) * 255).astype(np.uint8), (0, 0), 3)
    before = cv2.cvtColor(texture, cv2.COLOR_GRAY2RGB)
    after = cv2.warpAffine(before, np.float32([[1, 0, 3.5], [0, 1, -2.25]]), (480, 480),
                           borderMode=cv2.BORDER_REFLECT)
    moved, followed = PointTracker()._flow(region.cut(before), region.cut(after), points, region)
    assert followed.all()
    np.testing.assert_allclose(moved - points, np.tile([3.5, -2.25], (4, 1)), atol=0.25)


def test_a_lost_face_or_a_new_frame_size_starts_the_flow_over():
    frames = clip_frames("glasses.mp4", 4)
    tracker = PointTracker()
    with LandmarkDetector(video=True) as detector:
        faces = [detector.detect(f) for f in frames]
    assert tracker.update(faces[0], frames[0]) is not None
    assert tracker.update(None, frames[1]) is None
    again = tracker.update(faces[2], frames[2])
    assert again is not None and again.steady is not None and not again.steady.any()
    np.testing.assert_array_equal(again.points, faces[2].points)
    # The same face in a frame padded to another size (another camera mode): MediaPipe's points again.
    taller = np.pad(frames[3], ((0, 40), (0, 0), (0, 0)))
    resized = tracker.update(faces[3], taller)
    assert resized is not None and resized.steady is not None and not resized.steady.any()
    followed = tracker.update(faces[3], taller)
    assert followed is not None and followed.steady is not None and followed.steady.any()


def test_a_face_placed_past_the_frame_edge_is_tracked_without_error():
    """MediaPipe can place a face leaving the frame partly, even wholly, outside it: the flow's region
    stays inside the frame (it was cut empty, and OpenCV raised, ending a render)."""
    frames = clip_frames("glasses.mp4", 2)
    with LandmarkDetector(video=True) as detector:
        face = detector.detect(frames[0])
    assert face is not None
    tracker = PointTracker()
    for dx in (0.0, 300.0, 700.0, -700.0):  # the frames are 480 wide
        moved = replace(face, points=face.points + np.float32([dx, 0, 0]))
        for rgb in frames:
            out = tracker.update(moved, rgb)
            assert out is not None and np.isfinite(out.points).all()
        region = tracker._region
        assert region is not None and 0 <= region.x0 < region.x1 <= 480 and 0 <= region.y0 < region.y1 <= 480
