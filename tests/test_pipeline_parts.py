"""The prefetch stage used by render, the libraries' threads, and the two paste-back paths."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import clip_frames, prepared

from livefake.compositor import Compositor, MouthOpening
from livefake.detail import DetailFrame
from livefake.gil import quick_handoffs
from livefake.prefetch import prefetch
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.warp import WarpSolver


def test_prefetch_keeps_order_overlaps_and_stops_its_worker():
    started: dict[int, float] = {}

    def slow(x: int) -> int:
        started[x] = time.perf_counter()
        time.sleep(0.01)
        return x * x

    out, consumed = [], {}
    for x, y in prefetch(range(20), slow, depth=2):
        time.sleep(0.01)  # the consumer works while the worker computes the next one
        consumed[x] = time.perf_counter()
        out.append((x, y))
    assert out == [(x, x * x) for x in range(20)]
    # Overlap: the worker started item k+1 before the consumer was done with item k.
    assert sum(started[k + 1] < consumed[k] for k in range(19)) >= 15
    for _ in prefetch(range(1000), slow, name="early-stop-test"):
        break
    time.sleep(0.05)
    assert not any(t.name == "early-stop-test" and t.is_alive() for t in threading.enumerate())


def test_prefetch_raises_worker_errors_in_the_caller():
    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("bad frame 3")
        return x

    with pytest.raises(ValueError, match="bad frame 3"):
        list(prefetch(range(10), boom))


def test_full_resolution_paste_agrees_with_crop_paste_and_is_sharper():
    src = prepared("astronaut.png")  # 512 photo, face larger than a 256 crop's pixels
    frames = clip_frames("mouth_open.mp4", 150)
    with Reenactor(src) as plain, Reenactor(src, ReenactConfig(full_resolution_beyond=0.0)) as sharp:
        a = [plain.process(f, i / 30).frame for i, f in enumerate(frames)]
        b = [sharp.process(f, i / 30).frame for i, f in enumerate(frames)]
    diff = np.abs(np.array(a, np.float32) - np.array(b, np.float32)).mean()
    assert diff < 3.0  # the same motion, mouth and all
    neutral = b[0].astype(np.float32)
    assert np.abs(neutral - sharp.marked_photo).mean() < 0.3  # at rest it is the photo, pixel for pixel almost

    def detail(img: np.ndarray) -> float:
        x0, y0, x1, y1 = plain.compositor.box
        g = img[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
        return float(np.abs(np.diff(g, axis=1)).mean())

    assert detail(b[0]) > 1.05 * detail(a[0])


@pytest.mark.parametrize("photo", ["glasses_dim.jpg", "o_mouth.jpg"])
def test_the_full_resolution_paste_lights_the_face_as_a_gain_looked_up_at_every_pixel_would(photo, monkeypatch):
    """The shading's gain is looked up every fourth pixel and enlarged (2-3 ms a frame less on a 720x720
    close-up): on a gain with waves 16 of its 64 cells long and 0.4 deep (steeper than the shading's) the
    face is lit within 3 levels of a lookup at every pixel, 1 at the 99th percentile, also at the box's
    edges and where it (515 px) is no multiple of four. Samples placed 1.5 px off (at the corners of each
    four pixels, not where cv2.resize reads them) are 4 and 9 levels off, 3 and 7 at the 99th percentile;
    read from a replicated border instead of one more sample, the box's edges were 8 off."""
    import livefake.compositor as compositor_module

    source = prepared(photo)
    field = WarpSolver(source.points, source.transform.size).identity
    cells = np.arange(64, dtype=np.float32)
    wave = 1.0 + 0.4 * np.sin(2 * np.pi * cells / 16)
    gain = np.ascontiguousarray(np.stack([wave[None, :] * wave[:, None]] * 3, axis=-1) * [1.0, 0.9, 1.1],
                                dtype=np.float32)
    flat = np.full((*source.photo.shape[:2], 3), 160, np.uint8)
    source = dataclasses.replace(source, photo=flat)  # a grey photo: what shows is the gain
    got = Compositor(source)._warp_photo(field, None, gain, None).astype(np.int16)
    monkeypatch.setattr(compositor_module, "GAIN_SHRINK", 1)
    every = Compositor(source)._warp_photo(field, None, gain, None).astype(np.int16)
    assert np.abs(every - flat[:1, :1]).max() > 60  # the gain shows
    off = np.abs(got - every)
    assert off.max() <= 3 and np.percentile(off, 99) <= 1


def test_the_full_resolution_paste_draws_the_mouth_interior_sharp_inside_its_outline_and_nowhere_else():
    """o_mouth.jpg's face is resampled from the photo, and the mouth's interior is drawn into it at the photo's
    resolution: inside the outline each pixel shows the interior where the generator's crop would read it
    (an interior that is a ramp, so bilinear reads are exact), outside nothing changes, and the outline's edge
    is as sharp as the photo's pixels (drawn in the crop and magnified 5.4 times, it ramped over ~8 px)."""
    source = prepared("o_mouth.jpg")
    size = source.transform.size
    compositor = Compositor(source)
    field = WarpSolver(source.points, size).identity
    photo_only = compositor._warp_photo(field, None, None, None)
    m = 64
    ramp = np.zeros((m, m, 3), np.uint8)
    ramp[..., 0] = (np.arange(m) * 3)[None, :]  # red grows along x, green along y: 3 levels a pixel
    ramp[..., 1] = (np.arange(m) * 3)[:, None]
    ramp[..., 2] = 255
    affine = np.array([[0.9, 0.1, 0.05], [-0.05, 1.1, 0.1]])  # crop unit -> interior unit
    outline = np.array([[110.0, 150.0], [146.0, 150.0], [146.0, 176.0], [110.0, 176.0]], np.float32)
    got = compositor._warp_photo(field, MouthOpening(outline, 1.0, ramp, affine), None, None)
    changed = np.abs(got.astype(np.int16) - photo_only).max(axis=2) > 0
    to_crop = source.transform.matrix
    x0, y0 = compositor.box[:2]
    ys, xs = np.nonzero(changed)
    crop_xy = np.stack([xs + x0, ys + y0], 1) @ to_crop[:, :2].T + to_crop[:, 2]
    # Nothing changes beyond the outline but its anti-aliased edge, 4 photo pixels at most.
    edge = 4 * source.transform.scale
    assert (crop_xy.min(axis=0) > outline.min(axis=0) - edge).all()
    assert (crop_xy.max(axis=0) < outline.max(axis=0) + edge).all()
    inside = (crop_xy > outline.min(axis=0) + 1).all(axis=1) & (crop_xy < outline.max(axis=0) - 1).all(axis=1)
    unit = (crop_xy[inside] + 0.5) * (2.0 / size) - 1.0
    read = (unit @ affine[:, :2].T + affine[:, 2] + 1.0) * (m / 2.0) - 0.5  # interior pixels, as grid_sample reads
    expected = 3 * np.clip(read, 0, m - 1)
    shown = got[ys[inside], xs[inside], :2].astype(np.float64)
    assert np.abs(shown - expected).max() <= 1.5
    assert (got[ys[inside], xs[inside], 2] == 255).all()
    # The edge: along a row through the middle, the blue channel climbs from the photo's to 255 within 4 px.
    row = int(np.median(ys[inside]))
    blue = got[row, :, 2].astype(np.float64)
    base = photo_only[row, :, 2].astype(np.float64)
    climbing = (blue > base + 0.1 * (255 - base)) & (blue < base + 0.9 * (255 - base))
    assert 0 < climbing.sum() <= 8  # both edges
    weightless = compositor._warp_photo(field, MouthOpening(outline, 0.0, ramp, affine), None, None)
    assert np.array_equal(weightless, photo_only)


def test_the_full_resolution_paste_takes_the_detail_wherever_its_mask_reaches_and_nowhere_else():
    """The eyes and lips redrawn at the photo's resolution (livefake.detail) are blended in only over the part
    of the box their mask lands on, with each redrawn window laid over the base: the result equals blending
    the whole box from the base with the windows already in it, for masks at the crop's middle, right edge
    and corner (a part one pixel short leaves a seam of unblended photo), and one above the photo
    (astronaut.png's crop reaches past its top) changes nothing."""
    source = prepared("astronaut.png")
    size = source.transform.size
    compositor = Compositor(source)
    field = WarpSolver(source.points, size).identity
    base = np.random.default_rng(1).integers(0, 256, source.crop.shape, dtype=np.uint8)  # every read tells
    window = (150, 100, np.ascontiguousarray(source.crop[150:190, 100:180, ::-1]))  # top, left, pixels
    laid = base.copy()
    laid[150:190, 100:180] = window[2]
    photo_only = compositor._warp_photo(field, None, None, None)

    def pasted(image: np.ndarray, windows: tuple, shows: np.ndarray) -> np.ndarray:
        return compositor._warp_photo(field, None, None, DetailFrame(image, windows, source.transform, shows))

    whole = pasted(laid, (), np.ones((size, size), np.float32))
    whole_mask = cv2.warpAffine(np.ones((size, size), np.float32), compositor._to_box, compositor._size)
    reached = 0
    for x0, y0, side in ((90, 140, 60), (0, 0, 9), (size - 7, 60, 7), (size - 5, size - 5, 5)):
        mask = np.zeros((size, size), np.float32)
        mask[y0:y0 + side, x0:x0 + side] = 1.0
        inside = cv2.warpAffine(mask, compositor._to_box, compositor._size)
        expected = cv2.blendLinear(whole, photo_only, inside, 1.0 - inside)
        got = pasted(base, (window,), mask)
        assert np.array_equal(got[whole_mask == 0], photo_only[whole_mask == 0])
        # Within OpenCV's fixed-point rounding of a shifted remap; a pixel left out would be 50-200 levels off.
        # (Not on the footprint's own anti-aliased edge, where `whole` is part photo already.)
        exact = (whole_mask == 0) | (whole_mask == 1)
        assert np.abs(got.astype(np.int16) - expected)[exact].max() <= 8, (x0, y0)
        reached += bool((inside > 0).any())
    assert reached == 3  # all but the corner above the photo
    assert np.array_equal(pasted(base, (window,), np.zeros((size, size), np.float32)), photo_only)


def test_a_face_the_crop_shrinks_over_four_times_is_resampled_from_the_photo():
    """o_mouth.jpg's face is cut 5.4 times smaller into the 256 crop: pasted back, the crop is plainly
    softer than the photo, so by default the face is resampled from the photo itself. astronaut.png's,
    1.2 times, is pasted as before."""

    def outputs(name: str, config: ReenactConfig) -> np.ndarray:
        with Reenactor(prepared(name), config) as r:
            return np.array([r.process(f, i / 30).frame for i, f in enumerate(clip_frames("mouth_open.mp4", 3))])

    def detail(frames: np.ndarray) -> float:  # mean step between neighbouring pixels, the last frame
        return float(np.abs(np.diff(frames[-1].astype(np.float32).mean(axis=2), axis=1)).mean())

    pasted_config = ReenactConfig(full_resolution_beyond=np.inf)
    resampled, pasted = outputs("o_mouth.jpg", ReenactConfig()), outputs("o_mouth.jpg", pasted_config)
    assert detail(resampled) > 1.3 * detail(pasted)
    np.testing.assert_array_equal(outputs("astronaut.png", ReenactConfig()), outputs("astronaut.png", pasted_config))


def test_overlapping_quick_handoff_scopes_restore_the_interval_when_the_last_ends():
    """Two runs that overlap without nesting (a pipeline, a render in another thread) share the one change to
    the process's switch interval: the first sets it, the last to end restores it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        first, second = quick_handoffs(), quick_handoffs()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert sys.getswitchinterval() == 0.001
        second.__exit__(None, None, None)
        assert sys.getswitchinterval() == 0.005
        with pytest.raises(ValueError), quick_handoffs():
            raise ValueError("a run that fails")
        assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(before)


def test_importing_livefake_keeps_each_library_to_the_calling_thread_unless_the_user_says_otherwise():
    """The stages fill the cores themselves: torch and OpenCV get one thread each when livefake is imported
    first (OpenCV's helper otherwise spins in sched_yield, benchmarks/RESULTS.md); a variable the user set
    wins."""
    probe = "import livefake, cv2, torch; print(cv2.getNumThreads(), torch.get_num_threads())"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENCV_FOR_THREADS_NUM", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

    def threads(**env: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True,
                             check=True, timeout=120)
        return [int(x) for x in out.stdout.split()]

    assert threads() == [1, 1]
    assert threads(OPENCV_FOR_THREADS_NUM="2", OMP_NUM_THREADS="2") == [2, 2]
