"""Video files in and out with PyAV, decoding and encoding in background threads.

Frames are ``(H, W, 3)`` uint8 RGB arrays; times are seconds taken from the real timestamps, so
variable-frame-rate clips keep their timing and the output stays in sync with its audio.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from livefake.errors import LivefakeError

_QUEUE_SIZE = 8
_TIME_BASE = Fraction(1, 90000)  # output video clock: exact for 24, 25, 30, 60 and 30000/1001 fps
_COPIED_AUDIO = {"aac", "mp3"}  # MP4 takes these as they are; other codecs are transcoded to AAC
_AUDIO_PREROLL_S = 0.05  # copied audio before the start warms up the decoder; the MP4 edit list hides it
# Frames of up to this many pixels (640x720 or any other shape of that area) are decoded by one FFmpeg thread and
# encoded by one x264 thread: helper threads only compete with the stages for the cores. One thread encoded a
# 412x550 frame at plain veryfast in about 4.5 ms of CPU against 5.0 with PyAV's default (slice threads, one per core;
# alternating runs), into a 5 % smaller file (one slice a frame), and decoded talking.mp4's 512x512 frames in 1.06
# against 1.30 ms of CPU (FFmpeg's frame and slice threads); it still encodes a frame of this area in about 9 ms.
_ONE_THREAD_PIXELS = 640 * 720
# With the default preset, veryfast, x264 refines sub-pixel motion less (subme 1 for veryfast's 2) and leaves out
# the 4x4 intra partitions of P and B frames and the B frames' 8x8 ones (the partitions list replaces veryfast's
# i4x4,i8x8,p8x8,b8x8). On 200 rendered 412x550 frames at crf 18, four alternating rounds: 2.8 against 4.5 ms of
# CPU a frame, 42.0 against 42.3 dB PSNR, a 3 % larger file (subme 1 alone, or with the b8x8 partitions kept:
# 3.2-3.45 ms, 42.05 dB). The encoder is about a sixth of `render`'s CPU; superfast would save 1.7 ms, but
# doubles the file.
_VERYFAST_ANALYSIS = "subme=1:partitions=i8x8,p8x8"
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_PICK_ANOTHER = "re-export it or pick another clip"


def _error(action: str, why: str | Exception, todo: str) -> LivefakeError:
    """The one-line user-facing error ``cannot <action>: <why>; <todo>`` (an FFmpeg error gives its reason)."""
    if isinstance(why, Exception):
        why = getattr(why, "strerror", None) or str(why).splitlines()[0]
    return LivefakeError(f"cannot {action}: {why}; {todo}")


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its container without decoding."""

    width: int
    height: int
    fps: Fraction  # average frame rate (for a variable-frame-rate clip, the average)
    frame_count: int | None  # from the container, None when it does not say
    duration_s: float | None
    has_audio: bool
    tags: dict[str, str] = field(default_factory=dict)  # the container's metadata (title, comment, ...)


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame; ``rgb`` is ``(H, W, 3)`` uint8 RGB, C-contiguous."""

    index: int  # 0-based, in decode order
    time_s: float  # presentation time in seconds from the stream start
    rgb: np.ndarray


class VideoReader:
    """Reads a file's first video stream as :class:`VideoFrame` objects, decoding ahead in a thread.

    Opening checks the file and fills ``info``. Each iteration decodes from the start, at most ``max_frames``
    frames; a packet that fails to decode is skipped and counted in ``corrupt_packets``, a file cut short
    just ends early. Frames come upright: a display rotation (phone clips) is applied, so their shape
    may be ``info``'s height and width swapped. Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, max_frames: int | None = None) -> None:
        self.path, self.max_frames, self.corrupt_packets = Path(path), max_frames, 0
        self._thread: threading.Thread | None = None
        self._stop, self._started = threading.Event(), False
        self._frames: queue.Queue[VideoFrame | Exception | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        action = f"read video '{self.path}'"
        if not self.path.is_file():
            raise _error(action, "there is no such file", "check the path")
        try:
            self._container = av.open(str(self.path))
        except av.InvalidDataError:
            raise _error(action, "it is not a video, or it is truncated or corrupt", _PICK_ANOTHER) from None
        except (av.FFmpegError, OSError) as err:
            raise _error(action, err, "check the file") from None
        streams = self._container.streams
        if not streams.video or streams.video[0].codec_context is None or not streams.video[0].width:
            self._container.close()
            raise _error(action, "it has no video stream that can be decoded", "pick a video (H.264 MP4 works)")
        self._stream = stream = streams.video[0]
        if stream.width * stream.height > _ONE_THREAD_PIXELS:
            stream.thread_type = "AUTO"  # frame and slice threads in the decoder
        else:
            stream.codec_context.thread_count = 1
        duration = stream.duration and stream.duration * stream.time_base
        duration = duration or (self._container.duration or 0) / av.time_base
        self.info = VideoInfo(stream.width, stream.height, Fraction(stream.average_rate or stream.guessed_rate or 30),
                              stream.frames or None, float(duration) or None, bool(streams.audio),
                              dict(self._container.metadata))

    def __iter__(self) -> Iterator[VideoFrame]:
        self._stop_thread()
        if self._started:
            self._container.seek(0)
        self._started, self.corrupt_packets, self._stop = True, 0, threading.Event()
        self._thread = threading.Thread(target=self._decode_into, args=(self._stop,), name="livefake-decode")
        self._thread.daemon = True
        self._thread.start()
        try:
            while (item := self._frames.get()) is not None:
                if isinstance(item, VideoFrame):
                    yield item
                elif isinstance(item, LivefakeError):
                    raise item
                else:
                    raise _error(f"read video '{self.path}'", item, _PICK_ANOTHER) from item
        finally:
            self._stop_thread()

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Decoded frames: a packet that fails to decode is skipped, a read error ends the stream."""
        try:
            for packet in self._container.demux(self._stream):
                try:
                    yield from packet.decode()
                except av.InvalidDataError:
                    self.corrupt_packets += 1
        except (av.FFmpegError, OSError):  # the rest of the file cannot be read: flush the decoder
            self.corrupt_packets += 1
            yield from self._stream.codec_context.decode(None)

    def _decode_into(self, stop: threading.Event) -> None:
        """Thread body: queue VideoFrames, then an exception if one happened, then None; ends at ``stop``."""
        start, count = self._stream.start_time or 0, 0
        try:
            for frame in itertools.islice(self._decoded(), self.max_frames):
                time_s = count / self.info.fps if frame.pts is None else (frame.pts - start) * frame.time_base
                rgb = frame.to_ndarray(format="rgb24")
                turns = round((frame.rotation or 0) / 90) % 4  # phone clips: display rotation, counter-clockwise
                rgb = np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)
                if stop.is_set():
                    return
                self._frames.put(VideoFrame(count, float(time_s), rgb))
                count += 1
            if count == 0 and self.max_frames != 0:
                why = "no frame could be decoded (corrupt file or unsupported codec)"
                raise _error(f"read video '{self.path}'", why, _PICK_ANOTHER)
        except Exception as err:
            self._frames.put(err)
        finally:
            self._frames.put(None)

    def _stop_thread(self) -> None:
        """Stop the decoding thread, emptying the queue so that it cannot block on a full one."""
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._frames.get(timeout=0.01)
        self._thread = None
        self._frames = queue.Queue(maxsize=_QUEUE_SIZE)

    def close(self) -> None:
        """Stop decoding and close the file; safe to call more than once."""
        self._stop_thread()
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoWriter:
    """Writes ``(height, width, 3)`` uint8 RGB frames to an H.264 (libx264, yuv420p) MP4, encoding in a thread.

    Frame times count from the first frame written, so a driver's ``time_s`` can be passed as is, with
    ``audio_start_s`` = that first time to take ``audio_from``'s audio in sync (AAC/MP3 copied, other codecs
    transcoded to AAC, cut at the video's end). Errors of the encoder thread surface on the next
    :meth:`write` or on :meth:`close`. A writer closed before any frame leaves no file.
    """

    def __init__(
        self, path: str | Path, width: int, height: int, fps: Fraction, *, audio_from: str | Path | None = None,
        audio_start_s: float = 0.0, crf: int = 18, preset: str = "veryfast", metadata: dict[str, str] | None = None,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"width and height must be positive and even, got {width}x{height}")
        if preset not in _X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(_X264_PRESETS)}; got {preset!r}")
        self.path, self.width, self.height = Path(path), width, height
        self.fps = Fraction(fps).limit_denominator(1001)  # a float rate too; FFmpeg takes 32-bit ratios
        action = f"write video '{self.path}'"
        if not self.path.parent.is_dir():
            raise _error(action, f"the folder '{self.path.parent}' does not exist", "create it or choose another path")
        if self.path.is_dir():
            raise _error(action, "it is a folder", "give a file name such as out.mp4")
        try:  # FFmpeg opens the file only when encoding starts: find an unwritable path now
            with open(self.path, "ab"):
                pass
        except OSError as err:
            raise _error(action, err.strerror or err, "choose a path in a folder you can write to") from None
        try:
            self._audio_source = None if audio_from is None else av.open(str(audio_from))
        except (av.FFmpegError, OSError) as err:
            raise _error(f"take audio from '{audio_from}'", err, "check the path or leave the audio out") from None
        try:
            self._out = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as err:
            if self._audio_source is not None:
                self._audio_source.close()
            raise _error(action, err, "check that the folder is writable") from None
        self._out.metadata.update(metadata or {})
        options = {"crf": str(crf), "preset": preset}
        if preset == "veryfast":
            options["x264-params"] = _VERYFAST_ANALYSIS
        self._video = self._out.add_stream("libx264", rate=self.fps, options=options)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        if width * height <= _ONE_THREAD_PIXELS:
            self._video.codec_context.thread_count = 1
        self._video.time_base = self._video.codec_context.time_base = _TIME_BASE
        self._audio_end_s = float("inf")
        self._audio_packets: Iterator[tuple[float, av.Packet]] = iter(())
        if self._audio_source is not None and self._audio_source.streams.audio:
            source = self._audio_source.streams.audio[0]
            copy = source.codec_context.codec.canonical_name in _COPIED_AUDIO
            layout = "mono" if source.channels == 1 else "stereo"
            self._audio = (self._out.add_stream_from_template(source) if copy
                           else self._out.add_stream("aac", rate=source.rate, layout=layout))
            self._audio_packets = self._audio_from(source, audio_start_s, copy)
        self._pending_audio: tuple[float, av.Packet] | None = None
        self._frame_ticks = round(1 / (self.fps * _TIME_BASE))
        self._first_time_s: float | None = None
        self._last_pts, self._count, self._error = -1, 0, None
        self._queue: queue.Queue[av.VideoFrame | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = threading.Thread(target=self._encode_loop, name="livefake-encode")
        self._thread.daemon = True
        self._thread.start()

    def write(self, rgb: np.ndarray, time_s: float | None = None) -> None:
        """Queue one ``(height, width, 3)`` uint8 RGB frame shown at ``time_s`` (None: frame index / fps)."""
        self._raise_if_failed()
        if self._thread is None:
            raise ValueError("write() on a closed VideoWriter")
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != (self.height, self.width, 3):
            got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"expected ({self.height}, {self.width}, 3) uint8, got {got}")
        t = self._count / self.fps if time_s is None else time_s
        self._first_time_s = t if self._first_time_s is None else self._first_time_s
        pts = max(round((t - self._first_time_s) / _TIME_BASE), self._last_pts + 1)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")  # a copy: the caller may reuse rgb
        frame.pts, frame.time_base, frame.duration = pts, _TIME_BASE, self._frame_ticks
        self._last_pts, self._count = pts, self._count + 1
        self._queue.put(frame)

    def _encode_loop(self) -> None:
        """Thread body: encode queued frames until None; after an error, only drain the queue."""
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._encode(frame)
                except Exception as err:
                    self._error = err

    def _encode(self, frame: av.VideoFrame | None) -> None:
        """Encode ``frame`` (None: flush) and mux its packets, each after the audio that plays before it."""
        for packet in self._video.encode(frame):
            self._mux_audio(float(packet.dts * packet.time_base))
            self._out.mux(packet)

    def _mux_audio(self, until_s: float) -> None:
        """Mux the output audio packets that start before ``until_s`` seconds."""
        self._pending_audio = self._pending_audio or next(self._audio_packets, None)
        while self._pending_audio is not None and self._pending_audio[0] < until_s:
            self._out.mux(self._pending_audio[1])
            self._pending_audio = next(self._audio_packets, None)

    def _audio_from(self, source: av.AudioStream, start_s: float, copy: bool) -> Iterator[tuple[float, av.Packet]]:
        """(output time in s, packet) of the output audio: ``source`` from ``start_s`` to the video's end."""
        video = source.container.streams.video  # start_s counts from its start, as VideoFrame.time_s does
        start_s += float(video[0].start_time * video[0].time_base) if video and video[0].start_time else 0.0
        offset = round(start_s / source.time_base)
        for packet in source.container.demux(source):
            if packet.pts is None:
                continue
            t = float((packet.pts - offset) * source.time_base)
            if t >= self._audio_end_s:
                break
            if t + float((packet.duration or 0) * source.time_base) <= -_AUDIO_PREROLL_S:
                continue
            if copy:
                packet.pts, packet.dts, packet.stream = packet.pts - offset, packet.pts - offset, self._audio
                yield t, packet
                continue
            with contextlib.suppress(av.InvalidDataError):  # a corrupt audio packet is left out
                for frame in packet.decode():
                    frame_t = t if frame.time is None else frame.time - start_s
                    frame.pts, frame.time_base = round(frame_t * frame.rate), Fraction(1, frame.rate)
                    yield from ((float(p.pts * p.time_base), p) for p in self._audio.encode(frame))
        if not copy:
            yield from ((float(p.pts * p.time_base), p) for p in self._audio.encode(None))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            todo = "check the free disk space and the audio source, or write elsewhere"
            raise _error(f"write video '{self.path}'", self._error, todo) from self._error

    def close(self) -> None:
        """Flush the encoder, add the audio up to the video's end and finish the file; safe to call twice."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        try:
            if self._error is None and self._count:
                self._encode(None)
                self._audio_end_s = float((self._last_pts + self._frame_ticks) * _TIME_BASE)
                self._mux_audio(self._audio_end_s)
        except Exception as err:
            self._error = err
        for container in filter(None, (self._out, self._audio_source)):
            try:
                container.close()  # the output writes its index here
            except Exception as err:
                self._error = self._error or err
        if not self._count:
            self.path.unlink(missing_ok=True)
        self._raise_if_failed()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self.close()
        except LivefakeError:
            if exc_type is None:  # else the error that ended the block (often this one) goes on
                raise
