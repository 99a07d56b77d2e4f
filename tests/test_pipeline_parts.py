"""The prefetch stage used by render, and the two paste-back paths."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import clip_frames, prepared

from livefake.prefetch import prefetch
from livefake.reenactor import ReenactConfig, Reenactor


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
    with Reenactor(src) as plain, Reenactor(src, ReenactConfig(full_resolution=True)) as sharp:
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
