"""The audio delay line on real speech (talking.mp4's own track): exact to the sample at a fixed delay, no
discontinuity while the delay moves, bounded memory."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
from conftest import face_file

from livefake.audio import DelayLine, read_clip_audio
from livefake.errors import LivefakeError

RATE = 48000


@functools.cache
def speech() -> np.ndarray:
    samples, rate = read_clip_audio(face_file("videos", "talking.mp4"), RATE)
    assert rate == RATE
    return samples


def run(line: DelayLine, samples: np.ndarray, block: int = 480, on_block=None) -> np.ndarray:  # noqa: ANN001
    out = []
    for i in range(0, len(samples), block):
        if on_block is not None:
            on_block(i)
        out.append(line.process(samples[i:i + block]))
    return np.concatenate(out)


def test_clip_audio_is_real_stereo_speech():
    s = speech()
    assert s.shape[1] == 2 and len(s) / RATE > 14  # about 15 s
    assert 0.01 < float(np.sqrt((s ** 2).mean())) < 0.5


@pytest.mark.parametrize("delay_ms", [0, 37, 120])
def test_fixed_delay_shifts_speech_by_exactly_that_many_samples(delay_ms):
    s = speech()[: 5 * RATE]
    d = delay_ms * RATE // 1000
    line = DelayLine(RATE, 2, delay_s=d / RATE)
    out = run(line, s, block=441)  # blocks that do not divide the delay
    assert np.array_equal(out[d:], s[: len(s) - d])
    assert not out[:d].any()


def test_moving_delay_has_no_discontinuity_and_moves_at_its_slew():
    s = speech()[: 10 * RATE]
    line = DelayLine(RATE, 2, delay_s=0.050, slew=0.005)
    delays = []

    def jump(i: int) -> None:
        if i == 2 * RATE - 2 * RATE % 480:
            line.set_target(0.120)  # the measured video latency jumps by 70 ms
        delays.append(line.delay_s)

    out = run(line, s, on_block=jump)
    # The delay walks at 5 ms per second: 70 ms takes 14 s, so after 8 s it is 40 ms further.
    assert abs(delays[-1] - (0.050 + 0.005 * 8)) < 0.002
    assert np.all(np.diff(delays) >= -1e-12) and np.max(np.diff(delays)) <= 0.005 * 480 / RATE + 1e-9
    # No click: the largest sample-to-sample step of the output is that of the speech itself, not more.
    assert np.abs(np.diff(out, axis=0)).max() <= 1.05 * np.abs(np.diff(s, axis=0)).max()
    # And it is the speech itself, read at the moving delay (between samples, linearly).
    k = 6 * RATE // 480
    i = np.arange(1, 481)
    delay = (delays[k] + (delays[k + 1] - delays[k]) * i / 480) * RATE
    expected = np.interp(k * 480 + i - 1 - delay, np.arange(len(s)), s[:, 0])
    assert np.abs(out[k * 480:(k + 1) * 480, 0] - expected).max() < 1e-4


def test_an_instant_jump_would_click_where_the_slewed_delay_does_not():
    """The check above can fail: the same jump made at once leaves a step in the waveform."""
    s = speech()[: 4 * RATE]
    at = 2 * RATE - 2 * RATE % 480

    def steps(slew: float) -> float:
        line = DelayLine(RATE, 2, delay_s=0.050, slew=slew)
        out = run(line, s, on_block=lambda i: line.set_target(0.120) if i == at else None)
        return float(np.abs(np.diff(out[at - 4:at + 4], axis=0)).max())

    local = float(np.abs(np.diff(s[at - 2400 - 4:at - 2400 + 4], axis=0)).max())  # the speech there
    assert steps(1e6) > 3 * max(steps(0.005), local)


def test_memory_is_bounded_and_a_delay_beyond_it_is_clamped_with_a_message(caplog):
    line = DelayLine(RATE, 1, max_delay_s=0.5)
    size = line._ring.nbytes
    with caplog.at_level(logging.WARNING, logger="livefake"):
        line.set_target(2.0)
    assert "beyond the 500 ms this line holds" in caplog.text
    for _ in range(200):
        line.process(np.zeros((480, 1), np.float32))
    assert line._ring.nbytes == size and line.delay_s <= 0.5


def test_a_clip_without_audio_says_so(tmp_path):
    import cv2

    path = tmp_path / "silent.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    with pytest.raises(LivefakeError, match="has no audio track"):
        read_clip_audio(path)
