"""Audio: the voice delayed to match the video, so lips and voice stay in sync.

:class:`DelayLine` holds a bounded ring of recent samples and reads them back a delay later; the delay
follows a target (the live pipeline's measured latency) at a limited rate, by reading at a slightly
different speed (linear interpolation between samples), so a moving delay never clicks or jumps: at
5 ms per second the pitch moves by 0.5 %, below what a listener notices.

:func:`read_clip_audio` decodes a clip's own audio track (PyAV), the stand-in for a microphone when
``--driving FILE`` stands in for the webcam.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from livefake.errors import LivefakeError

log = logging.getLogger("livefake")


class DelayLine:
    """Delays (n, channels) float32 blocks by a delay that moves towards :meth:`set_target` at no more
    than ``slew`` seconds per second. Memory is ``max_delay_s`` of audio plus one block, whatever runs."""

    def __init__(self, sample_rate: int, channels: int, *, delay_s: float = 0.0, max_delay_s: float = 1.0,
                 slew: float = 0.005, max_block: int = 8192) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("sample_rate and channels must be positive")
        self.rate = sample_rate
        self.channels = channels
        self.max_delay = int(round(max_delay_s * sample_rate))
        self.slew = slew
        self.max_block = max_block
        self._size = self.max_delay + 2 * max_block + 2
        self._ring = np.zeros((self._size, channels), np.float32)
        self._written = 0  # samples written so far (the ring holds the last _size of them)
        self._delay = self._clamp(delay_s * sample_rate)  # in samples, fractional
        self._target = self._delay

    def _clamp(self, samples: float) -> float:
        if samples > self.max_delay:
            log.warning("audio delay %.0f ms is beyond the %.0f ms this line holds; using the most it can",
                        1000 * samples / self.rate, 1000 * self.max_delay / self.rate)
        return float(np.clip(samples, 0.0, self.max_delay))

    @property
    def delay_s(self) -> float:
        """The delay now, in seconds."""
        return self._delay / self.rate

    def set_target(self, delay_s: float) -> None:
        """Where the delay should go; it moves there at ``slew`` seconds per second."""
        self._target = self._clamp(delay_s * self.rate)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Write ``block`` ((n, channels) float32) and return the n samples a delay earlier."""
        n = len(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected (n, {self.channels}) samples, got {block.shape}")
        if n > self.max_block:
            return np.concatenate([self.process(block[i:i + self.max_block]) for i in range(0, n, self.max_block)])
        start = self._written
        idx = (start + np.arange(n)) % self._size
        self._ring[idx] = block
        self._written += n
        # The delay of each output sample: a straight move towards the target, at most slew per sample.
        step = float(np.clip(self._target - self._delay, -self.slew * n, self.slew * n)) / max(n, 1)
        delays = self._delay + step * np.arange(1, n + 1)
        self._delay = float(delays[-1]) if n else self._delay
        pos = (start + np.arange(n)) - delays  # fractional read positions (absolute sample numbers)
        base = np.floor(pos)
        frac = (pos - base).astype(np.float32)[:, None]
        base = base.astype(np.int64)
        valid = (base >= 0)[:, None]  # before the first sample: silence
        a = self._ring[base % self._size]
        b = self._ring[(base + 1) % self._size]
        out = a + frac * (b - a)
        return np.where(valid, out, 0.0).astype(np.float32)


def read_clip_audio(path: str | Path, sample_rate: int = 48000) -> tuple[np.ndarray, int]:
    """The audio track of ``path`` as (n, channels) float32 at ``sample_rate`` (stereo or mono kept)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise LivefakeError(f"cannot read '{path}' ({err}); check the file") from None
    with container:
        if not container.streams.audio:
            raise LivefakeError(f"'{path}' has no audio track")
        stream = container.streams.audio[0]
        layout = "mono" if stream.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, out.layout.nb_channels))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, out.layout.nb_channels))
    return np.concatenate(chunks).astype(np.float32), sample_rate


def _sounddevice():  # noqa: ANN202 - the module
    try:
        import sounddevice
    except ImportError:
        raise LivefakeError("sounddevice is missing; pip install sounddevice") from None
    except OSError:
        raise LivefakeError("the PortAudio library is missing; on Debian or Ubuntu: sudo apt install "
                            "libportaudio2 (on Windows and macOS it comes with sounddevice)") from None
    return sounddevice


def find_device(spec: str | int | None, kind: str) -> int | None:
    """An audio device index from a name (or part of one) or an index; None means the system default."""
    if spec is None:
        return None
    sd = _sounddevice()
    devices = sd.query_devices()
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    if isinstance(spec, int) or str(spec).isdigit():
        index = int(spec)
        if 0 <= index < len(devices) and devices[index][channels] > 0:
            return index
    else:
        for index, device in enumerate(devices):
            if str(spec).lower() in device["name"].lower() and device[channels] > 0:
                return index
    raise LivefakeError(f"no audio {kind} device '{spec}'; 'livefake devices' lists them")


def follow_latency(latency_s: Callable[[], float], line: DelayLine, running: Callable[[], bool],
                   period_s: float = 0.5) -> threading.Thread:
    """A daemon thread that sets ``line``'s target to the measured video latency every ``period_s``."""

    def follow() -> None:
        wait = threading.Event()
        while running():
            latency = latency_s()
            if latency > 0:
                line.set_target(latency)
            wait.wait(period_s)

    thread = threading.Thread(target=follow, name="livefake-audio-delay", daemon=True)
    thread.start()
    return thread


class ClipAudioPlayer:
    """A clip's audio track as a microphone stand-in: each :meth:`next` gives the following ``frames``
    samples (looping with its video), through the delay line."""

    def __init__(self, samples: np.ndarray, line: DelayLine) -> None:
        self.samples = samples
        self.line = line
        self.played = 0

    def next(self, frames: int) -> np.ndarray:
        start = self.played % max(len(self.samples), 1)
        block = self.samples[start:start + frames]
        if len(block) < frames:
            block = np.concatenate([block, self.samples[: frames - len(block)]])
        self.played += frames
        return self.line.process(block)


class AudioPassthrough:
    """Microphone (or a clip's audio) to an output device, delayed by a :class:`DelayLine` whose target
    the live app sets from its measured video latency. Under- and overruns are counted, never fatal.
    ``source``: an (n, channels) float32 array to play instead of a microphone, in real time."""

    def __init__(self, *, input_device: int | None = None, output_device: int | None = None,
                 sample_rate: int = 48000, channels: int = 1, block: int = 480, delay_s: float = 0.0,
                 source: np.ndarray | None = None) -> None:
        sd = _sounddevice()
        self.line = DelayLine(sample_rate, channels, delay_s=delay_s)
        self.xruns = 0
        self.samples = 0
        self._closing = False
        self.player = ClipAudioPlayer(source, self.line) if source is not None else None
        try:
            if source is None:
                self.stream = sd.Stream(device=(input_device, output_device), samplerate=sample_rate,
                                        blocksize=block, channels=channels, dtype="float32",
                                        callback=self._duplex)
            else:
                self.stream = sd.OutputStream(device=output_device, samplerate=sample_rate, blocksize=block,
                                              channels=channels, dtype="float32", callback=self._playback)
        except sd.PortAudioError as err:
            raise LivefakeError(f"cannot open the audio devices ({err}); 'livefake devices' lists them, "
                                "and --audio-in / --audio-out pick others") from None

    def _duplex(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time: object, status: object) -> None:
        if status:
            self.xruns += 1
        outdata[:] = self.line.process(indata)
        self.samples += frames

    def _playback(self, outdata: np.ndarray, frames: int, time: object, status: object) -> None:
        if status:
            self.xruns += 1
        assert self.player is not None
        outdata[:] = self.player.next(frames)
        self.samples += frames

    def set_delay(self, seconds: float) -> None:
        self.line.set_target(seconds)

    def watch(self, running: Callable[[], bool], period_s: float = 0.5) -> threading.Thread:
        """A daemon thread that says once, in one line, when the stream stops on its own (a device
        unplugged mid-run); the video goes on."""

        def check() -> None:
            wait = threading.Event()
            while running():
                if not self.stream.active and not self._closing:
                    log.warning("audio: the audio device stopped (unplugged?); the video goes on without sound")
                    return
                wait.wait(period_s)

        thread = threading.Thread(target=check, name="livefake-audio-watch", daemon=True)
        thread.start()
        return thread

    def start(self) -> AudioPassthrough:
        self.stream.start()
        return self

    def close(self) -> None:
        self._closing = True
        self.stream.stop()
        self.stream.close()

    def __enter__(self) -> AudioPassthrough:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_devices() -> str:
    """Audio inputs and outputs, one line each, with their index (for --audio-in / --audio-out)."""
    sd = _sounddevice()
    lines = []
    for index, device in enumerate(sd.query_devices()):
        kinds = [k for k, key in (("in", "max_input_channels"), ("out", "max_output_channels")) if device[key] > 0]
        lines.append(f"{index:3d}  {'/'.join(kinds):<6} {device['name']}")
    return "\n".join(lines) if lines else "no audio devices found (is a sound server or ALSA device there?)"
