"""The audio delay line on real speech (talking.mp4's own track): exact to the sample at a fixed delay, no
discontinuity while the delay moves, bounded memory."""

from __future__ import annotations

import functools
import logging
import os

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


ASOUNDRC = """
pcm.fileout {{ type plug  slave {{ pcm "fileout_raw"  format S16_LE  rate 48000  channels 1 }} }}
pcm.fileout_raw {{ type file  slave.pcm "null"  file "{dir}/out.raw"  format "raw" }}
"""

PLAYBACK = """
import sys, time
import numpy as np
from livefake.audio import AudioPassthrough, find_device
n, delay = int(sys.argv[1]), int(sys.argv[2])
speech = (np.fromfile("in.raw", dtype="<i2").astype(np.float32) / 32767)[:, None]
with AudioPassthrough(output_device=find_device("fileout", "output"), channels=1, delay_s=delay / 48000,
                      source=speech) as p:
    while p.samples < n + delay + 48000:
        time.sleep(0.001)
"""


def playback_offset(tmp_path, speech16: np.ndarray, delay: int) -> tuple[int, np.ndarray]:
    """Play speech (the clip's audio standing in for a microphone) through a real PortAudio output stream
    into an ALSA file device (no hardware): the offset at which it comes out, and what came out there.
    (ALSA's null device runs as fast as it is fed, so a duplex stream's two sides drift apart on it: the
    capture side is not tested this way.)"""
    import subprocess
    import sys

    run_dir = tmp_path / f"d{delay}"
    run_dir.mkdir()
    speech16.tofile(run_dir / "in.raw")
    (run_dir / ".asoundrc").write_text(ASOUNDRC.format(dir=run_dir))
    env = {**os.environ, "HOME": str(run_dir)}
    done = subprocess.run([sys.executable, "-c", PLAYBACK, str(len(speech16)), str(delay)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=run_dir)
    assert done.returncode == 0, done.stderr
    out = np.fromfile(run_dir / "out.raw", dtype="<i2")[: 4 * len(speech16)]
    score = np.correlate(out[: 2 * len(speech16)].astype(np.float64), speech16[:4800].astype(np.float64), "valid")
    offset = int(np.argmax(score))
    return offset, out[offset:offset + len(speech16)]


def test_a_real_portaudio_stream_through_alsa_plays_speech_delayed_by_exactly_the_delay(tmp_path):

    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as err:
        pytest.skip(f"no PortAudio here ({err}); Debian: apt install libportaudio2")
    if not os.path.exists("/usr/share/alsa/alsa.conf"):
        pytest.skip("no ALSA configuration (libasound2) to define file devices with")
    mono = speech()[: 2 * RATE].mean(axis=1)
    speech16 = (np.clip(mono, -1, 1) * 32767).astype("<i2")
    base, got0 = playback_offset(tmp_path, speech16, 0)
    shifted, got = playback_offset(tmp_path, speech16, 1234)
    # The speech itself both times (within the 16-bit conversions' last step), and moved by exactly the
    # delay: to the sample.
    assert np.abs(got0.astype(int) - speech16).max() <= 2 and np.abs(got.astype(int) - speech16).max() <= 2
    assert shifted - base == 1234


def test_devices_are_listed_and_a_missing_one_is_one_line(tmp_path):
    import subprocess
    import sys

    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as err:
        pytest.skip(f"no PortAudio here ({err}); Debian: apt install libportaudio2")
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(dir=tmp_path))
    env = {**os.environ, "HOME": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "livefake", "devices"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and "fileout" in listed.stdout and listed.stdout.startswith("webcams (--camera):")
    missing = subprocess.run([sys.executable, "-m", "livefake", "--driving", str(face_file("videos", "talking.mp4")),
                              "--audio", "--audio-out", "no-such-speaker", "--no-virtual-camera", "--seconds", "1",
                              "--stats", str(tmp_path / "s.json")], env=env, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 0  # the video goes on without the audio
    assert "audio: no audio output device 'no-such-speaker'; 'livefake devices' lists them; going on without it" \
        in missing.stderr


def test_a_device_that_stops_mid_run_is_said_once_and_nothing_else_stops(caplog):
    from livefake.audio import AudioPassthrough

    class Stream:  # what sounddevice's stream reports when its device goes away
        active = True

        def stop(self) -> None:
            self.active = False

        def close(self) -> None:
            pass

    audio = AudioPassthrough.__new__(AudioPassthrough)
    audio.stream, audio._closing = Stream(), False
    running = [True]
    with caplog.at_level(logging.WARNING, logger="livefake"):
        watcher = audio.watch(lambda: running[0], period_s=0.01)
        import time

        time.sleep(0.05)
        assert not caplog.records
        audio.stream.active = False  # unplugged
        watcher.join(timeout=1)
    assert [r.getMessage() for r in caplog.records] == [
        "audio: the audio device stopped (unplugged?); the video goes on without sound"]
    # Closing it on purpose says nothing.
    caplog.clear()
    audio.stream = Stream()
    watcher = audio.watch(lambda: running[0], period_s=0.01)
    audio.close()
    running[0] = False
    watcher.join(timeout=1)
    assert not caplog.records
