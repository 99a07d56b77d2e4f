"""The live app: the per-frame path of :mod:`livefake.reenactor` in pipelined threads.

    capture -> landmarks + retargeting -> warp geometry + generator -> colour match + paste-back -> output
      thread      thread                   thread                      thread                      thread

Stages are joined by :class:`~livefake.frame_queue.LatestQueue` s of depth 1: a stage that falls behind
takes the newest frame and the older one is dropped and counted, so latency stays bounded and nothing
grows. Every frame carries its id and capture time to the sinks, which record the latency. A frame that
fails in a stage is logged and skipped; the loop goes on. The output stage sends each new frame at once
and repeats the last one when the input stutters, so the virtual camera keeps its frame rate.

Controls (keys in the preview window, or :meth:`LivePipeline.control`): re-set the neutral pose, switch
among the source photos, pass-through, mirror, quit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from livefake.capture import FrameSource
from livefake.errors import LivefakeError
from livefake.frame_queue import LatestQueue
from livefake.frame_stamp import copy_stamp, read_stamp, write_stamp
from livefake.gil import quick_handoffs
from livefake.landmarks import FaceLandmarks
from livefake.point_tracking import DriverLandmarks
from livefake.reenactor import FramePlan, ReenactConfig, Reenactor
from livefake.retarget import Motion
from livefake.sinks import Sink
from livefake.source import PreparedSource, fit_to_size
from livefake.telemetry import Telemetry

log = logging.getLogger("livefake")


def _name_native_thread(name: str) -> None:
    """Give the OS thread the stage's name (15 bytes), so top -H and profilers show which stage is busy."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME (Linux)
    except (OSError, AttributeError):
        pass


class Control(Enum):
    RESET_NEUTRAL = "reset neutral"
    PASSTHROUGH = "pass-through"
    MIRROR = "mirror"
    QUIT = "quit"


# Keys of the preview window; digits 1-9 pick the source photo.
KEYS = {ord("n"): Control.RESET_NEUTRAL, ord(" "): Control.RESET_NEUTRAL, ord("p"): Control.PASSTHROUGH,
        ord("m"): Control.MIRROR, ord("q"): Control.QUIT, 27: Control.QUIT}
KEY_HELP = "n/space: re-set neutral pose | 1-9: source photo | p: pass-through | m: mirror | q/Esc: quit"


@dataclass(frozen=True)
class LiveConfig:
    """What the live pipeline is asked to do. ``repeat_after``: re-send the last frame when no new one
    came for this many frame intervals; ``stamp``: write a frame-id stamp at capture and read it at the
    output (the latency benchmark)."""

    fps: float = 30.0
    mirror: bool = False
    queue_depth: int = 1
    repeat_after: float = 1.5
    stamp: bool = False
    # Steady output: each frame is sent at its capture time plus a playout delay that follows a high
    # percentile of recent processing latency (at most ``max_playout_ms``), so the frames leave with the
    # camera's own spacing instead of the stages' jitter. 0 sends every frame the moment it is ready.
    max_playout_ms: float = 40.0
    playout_percentile: float = 95.0
    # The warp geometry in a thread of its own between landmarks and generator, instead of in the
    # generator's thread: a sixth thread, for machines where the generator runs on a GPU and the CPU
    # stages set the pace (on 2 CPU cores it only adds a hand-over). None: only with a GPU backend.
    geometry_thread: bool | None = None
    reenact: ReenactConfig = field(default_factory=ReenactConfig)


@dataclass
class _Frame:
    """One frame on its way through the stages."""

    id: int
    captured_at: float
    driver: np.ndarray
    source_index: int = 0
    face: FaceLandmarks | None = None
    motion: Motion | None = None  # None: pass-through
    plan: FramePlan | None = None
    crop: np.ndarray | None = None  # None: none generated (pass-through, or the full-resolution paste)
    output: np.ndarray | None = None


class LivePipeline:
    """Runs the stages in threads from ``source`` to ``sinks`` for the prepared ``sources`` (photos of the
    same output size). A context manager: leaving it stops every thread and releases the camera."""

    def __init__(self, sources: Sequence[PreparedSource], source: FrameSource, sinks: Sequence[Sink],
                 config: LiveConfig | None = None, telemetry: Telemetry | None = None,
                 preview: LatestQueue[np.ndarray] | None = None) -> None:
        if not sources:
            raise ValueError("at least one source photo")
        sizes = {s.photo.shape for s in sources}
        if len(sizes) != 1:
            raise ValueError(f"source photos must share one output size, got {sizes}")
        self.config = config or LiveConfig()
        self.source = source
        self.sinks = list(sinks)
        self.telemetry = telemetry or Telemetry()
        self.preview = preview
        self.reenactors = [Reenactor(s, self.config.reenact) for s in sources]
        self.output_size = sources[0].photo.shape[1], sources[0].photo.shape[0]
        self.detector = DriverLandmarks(self.config.reenact.tracking)
        depth = self.config.queue_depth
        on_gpu = any(r.backend is not None and r.backend.name in ("cuda", "tensorrt") for r in self.reenactors)
        self.geometry_thread = self.config.geometry_thread if self.config.geometry_thread is not None else on_gpu
        names = ("landmarks", "geometry", "generator", "composite", "output")
        self.queues: dict[str, LatestQueue[_Frame]] = {name: LatestQueue(depth, name) for name in names
                                                       if self.geometry_thread or name != "geometry"}
        self.active = 0
        self.mirror = self.config.mirror
        self._tracked_mirror = self.mirror  # the mirroring the landmarks thread last tracked through
        self.passthrough = False
        self._reset_requested = False
        self._switch_to: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handoffs = contextlib.ExitStack()
        self._t0 = time.perf_counter()
        self._stamp_times: dict[int, float] = {}
        self._stamp_lock = threading.Lock()
        self._last_error: dict[str, str] = {}
        self._drop_base: dict[str, int] = {}
        self._playout = 0.0
        # A clip played unpaced measures throughput: every stage waits for room instead of dropping, so no
        # stage burns the cores on frames a later one would drop. A camera (or a paced clip) never waits.
        self._lossless = not getattr(source, "paced", True)

    # ----- controls -----------------------------------------------------------------------------
    def control(self, command: Control | int) -> None:
        """Apply a live control; an int picks source photo ``command`` (0-based)."""
        if isinstance(command, int):
            if 0 <= command < len(self.reenactors) and command != self.active:
                self._switch_to = command
            return
        if command is Control.RESET_NEUTRAL:
            self._reset_requested = True
        elif command is Control.PASSTHROUGH:
            self.passthrough = not self.passthrough
        elif command is Control.MIRROR:
            self.mirror = not self.mirror
            self._reset_requested = True  # a mirrored driver has another neutral pose
        elif command is Control.QUIT:
            self._stop.set()

    def key(self, code: int) -> None:
        """A key pressed in the preview window."""
        if ord("1") <= code <= ord("9"):
            self.control(code - ord("1"))
        elif code in KEYS:
            self.control(KEYS[code])

    # ----- threads --------------------------------------------------------------------------------
    def start(self) -> LivePipeline:
        stages: list[tuple[str, Callable[[], None]]] = [
            ("capture", self._capture_loop),
            ("landmarks", lambda: self._stage_loop(
                "landmarks", "geometry" if self.geometry_thread else "generator", self._landmarks)),
            ("generator", lambda: self._stage_loop("generator", "composite", self._generate)),
            ("composite", lambda: self._stage_loop("composite", "output", self._composite)),
            ("output", self._output_loop),
        ]
        if self.geometry_thread:
            stages.insert(2, ("geometry", lambda: self._stage_loop("geometry", "generator", self._geometry)))
        self._t0 = time.perf_counter()

        def named(name: str, target: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                _name_native_thread(f"lf-{name}")
                target()
            return run

        for name, target in stages:
            thread = threading.Thread(target=named(name, target), name=f"livefake-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._handoffs.enter_context(quick_handoffs())  # undone in stop(), once the threads have ended
        return self

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def _frame_failed(self, stage: str, err: Exception) -> None:
        """One bad frame: count it, say it once per kind of error, go on."""
        self.telemetry.count("frame_errors")
        text = f"{type(err).__name__}: {err}"
        if self._last_error.get(stage) != text:
            self._last_error[stage] = text
            log.warning("%s stage skipped a frame (%s)", stage, text)

    def _capture_loop(self) -> None:
        frame_id = 0
        last_shape: tuple[int, ...] | None = None
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                rgb = self.source.read()
                if rgb is None:
                    if self.source.ended:
                        break
                    continue
                captured_at = time.perf_counter()
                if rgb.shape != last_shape:
                    if last_shape is not None:  # a camera back at another resolution: a new neutral pose
                        self._reset_requested = True
                    last_shape = rgb.shape
                if self.config.stamp:
                    write_stamp(rgb, frame_id)
                    with self._stamp_lock:
                        self._stamp_times[frame_id % (1 << 24)] = captured_at
                        self._stamp_times.pop((frame_id - 1000) % (1 << 24), None)  # never read back: dropped
                frame = _Frame(frame_id, captured_at, rgb)
                self.telemetry.count("captured")
                self.telemetry.stage("capture", captured_at - start - self.source.paced_wait_s)
                self.queues["landmarks"].put(frame, block=self._lossless)
                frame_id += 1
        except LivefakeError as err:
            log.error("%s", err)
        finally:
            self.source.close()
            if self.source.ended:
                self._drain_then_stop()

    def _drain_then_stop(self) -> None:
        """A clip that played out: let the frames in flight reach the sinks, then stop."""
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline and any(len(q) for q in self.queues.values()):
            time.sleep(0.01)
        time.sleep(0.1)
        self._stop.set()

    def _stage_loop(self, name: str, next_name: str, work: Callable[[_Frame], _Frame | None]) -> None:
        inbox, outbox = self.queues[name], self.queues[next_name]
        while not self._stop.is_set():
            got = inbox.get(timeout=0.1)
            if got is None:
                continue
            frame, waited = got
            start = time.perf_counter()
            try:
                result = work(frame)
            except Exception as err:  # one bad frame never stops the loop
                self._frame_failed(name, err)
                continue
            self.telemetry.stage(name, time.perf_counter() - start, waited)
            if result is not None:
                outbox.put(result, block=self._lossless)

    def _landmarks(self, frame: _Frame) -> _Frame:
        if self._switch_to is not None:
            new, self._switch_to = self._switch_to, None
            self.reenactors[new].retargeter.adopt_reference(self.reenactors[self.active].retargeter)
            self.active = new
        if self._reset_requested:
            self._reset_requested = False
            for r in self.reenactors:
                r.reset_reference()
        mirror = self.mirror  # read once: the key may flip it meanwhile
        if mirror != self._tracked_mirror:  # the flow cannot carry points across a mirroring
            self.detector.tracker.reset()
            self._tracked_mirror = mirror
        if mirror:
            frame.driver = np.ascontiguousarray(frame.driver[:, ::-1])
        frame.face = self.detector.detect(frame.driver)
        if frame.face is None:
            self.telemetry.count("faces_lost")
        frame.source_index = self.active
        if not self.passthrough:
            t = frame.captured_at - self._t0
            frame.motion = self.reenactors[self.active].retarget(frame.face, t)
        return frame

    def _geometry(self, frame: _Frame) -> _Frame:
        if frame.motion is not None:
            frame.plan = self.reenactors[frame.source_index].geometry(frame.motion, frame.face, frame.driver)
        return frame

    def _generate(self, frame: _Frame) -> _Frame:
        if frame.motion is not None and frame.plan is None:
            frame = self._geometry(frame)
        if frame.plan is not None:
            frame.crop = self.reenactors[frame.source_index].generate(frame.plan)
        return frame

    def _composite(self, frame: _Frame) -> _Frame:
        if frame.plan is None:
            w, h = self.output_size
            frame.output = np.array(fit_to_size(frame.driver, w, h))  # a copy: the mark goes on in place
            self.reenactors[frame.source_index].provenance.apply_(frame.output, passthrough=True)
        else:
            frame.output = self.reenactors[frame.source_index].composite(frame.plan, frame.crop)
        if self.config.stamp:
            copy_stamp(frame.driver, frame.output)
        return frame

    def _playout_wait(self, captured_at: float, recent: deque[float]) -> None:
        """Hold a frame until its capture time plus the playout delay (see :attr:`LiveConfig.max_playout_ms`)."""
        now = time.perf_counter()
        recent.append(now - captured_at)
        if self.config.max_playout_ms <= 0 or len(recent) < 10:
            return
        target = min(float(np.percentile(recent, self.config.playout_percentile)), self.config.max_playout_ms / 1000)
        # Move by at most 0.5 ms a frame: the spacing of frames changes by no more than that.
        self._playout += float(np.clip(target - self._playout, -5e-4, 5e-4))
        due = captured_at + self._playout
        if due > now:
            time.sleep(due - now)

    def _output_loop(self) -> None:
        inbox = self.queues["output"]
        period = 1.0 / self.config.fps
        last: np.ndarray | None = None
        last_sent = time.perf_counter()
        recent: deque[float] = deque(maxlen=90)
        try:
            while not self._stop.is_set():
                got = inbox.get(timeout=period / 4)
                now = time.perf_counter()
                if got is None:
                    if last is not None and now - last_sent >= self.config.repeat_after * period:
                        self._publish(last, last_sent)  # input stutters: keep the camera's frame rate
                        self.telemetry.count("repeats")
                        last_sent = now
                    continue
                frame, waited = got
                assert frame.output is not None
                captured_at = frame.captured_at
                self._playout_wait(captured_at, recent)
                start = time.perf_counter()
                self._publish(frame.output, captured_at)
                sent = time.perf_counter()
                if self.config.stamp:
                    stamp = read_stamp(frame.output)
                    if stamp != frame.id % (1 << 24):
                        self.telemetry.count("stamp_mismatches")
                    with self._stamp_lock:
                        stamped_at = self._stamp_times.pop(stamp, None) if stamp is not None else None
                    captured_at = stamped_at if stamped_at is not None else captured_at
                self.telemetry.frame_out(captured_at, sent)
                self._note_drops()
                self.telemetry.stage("output", sent - start, waited)
                last, last_sent = frame.output, sent
        finally:
            self._stop.set()

    def _publish(self, image: np.ndarray, captured_at: float) -> None:
        for sink in self.sinks:
            try:
                sink.send(image, captured_at)
            except Exception as err:  # a sink that fails drops this frame, not the app
                self._frame_failed(f"{sink.name} output", err)
        self.telemetry.count("published")
        if self.preview is not None:
            self.preview.put(image)

    @property
    def expected_latency_s(self) -> float:
        """The capture-to-output latency before any is measured: what the playout delay holds frames to."""
        return self.config.max_playout_ms / 1000

    def latency_s(self) -> float:
        """The recent measured capture-to-output latency (median), seconds; 0 before the first frame."""
        return self.telemetry.live()["e2e_ms"] / 1000

    def reset_telemetry(self) -> Telemetry:
        """Start counting afresh (a benchmark's warm-up is over); returns the new :class:`Telemetry`."""
        self._drop_base = {name: q.dropped for name, q in self.queues.items()}
        self.telemetry = Telemetry()
        return self.telemetry

    def _note_drops(self) -> None:
        self.telemetry.queue_drops = {name: q.dropped - self._drop_base.get(name, 0) for name, q in self.queues.items()}

    def wait(self, seconds: float | None = None) -> None:
        """Block until stopped (quit, a clip played out) or ``seconds`` have passed."""
        self._stop.wait(seconds)

    def stop(self) -> None:
        """Stop every thread (within about 0.2 s), release the camera, close the sinks."""
        self._stop.set()
        for q in self.queues.values():
            q.close()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._handoffs.close()
        self._note_drops()
        self.source.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as err:
                log.warning("closing the %s failed (%s)", sink.name, err)
        for r in self.reenactors:
            r.close()
        self.detector.close()
        self._threads.clear()

    def __enter__(self) -> LivePipeline:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def draw_overlay(image: np.ndarray, stats: dict[str, float], pipeline: LivePipeline) -> np.ndarray:
    """The preview's picture: the output with fps, latency, drops and the live state written on it."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    state = []
    if pipeline.passthrough:
        state.append("PASS-THROUGH")
    if pipeline.mirror:
        state.append("mirror")
    if len(pipeline.reenactors) > 1:
        state.append(f"source {pipeline.active + 1}/{len(pipeline.reenactors)}")
    lines = [f"{stats['fps']:.1f} fps  latency {stats['e2e_ms']:.0f} ms  dropped {stats['dropped']} "
             f"({stats['drop_rate'] * 100:.1f} %)  {' '.join(state)}", KEY_HELP]
    for i, text in enumerate(lines):
        y = 22 + 20 * i
        cv2.putText(bgr, text, (9, y + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(bgr, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def check_display() -> None:
    """Refuse ``--preview`` where no window can open: OpenCV's Qt build aborts the whole process there."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise LivefakeError("no display for the preview window (DISPLAY is not set); run without --preview, "
                            "or use --record OUT.mp4 to see the output later")


def run_preview(pipeline: LivePipeline, frames: LatestQueue[np.ndarray], seconds: float | None = None,
                title: str = "livefake") -> None:
    """The preview window, in the calling (main) thread, until quit, the window closes or time is up."""
    deadline = None if seconds is None else time.perf_counter() + seconds
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise LivefakeError("cannot open a preview window (no display?); run without --preview") from None
    shown = False
    while pipeline.running and (deadline is None or time.perf_counter() < deadline):
        image = frames.get_latest()
        if image is not None:
            if not shown:  # open at the frame's own size (at most 1280 wide), the user may resize it
                h, w = image.shape[:2]
                scale = min(1.0, 1280 / w)
                cv2.resizeWindow(title, int(w * scale), int(h * scale))
            cv2.imshow(title, draw_overlay(image, pipeline.telemetry.live(), pipeline))
            shown = True
        code = cv2.waitKey(10) & 0xFF
        if code != 0xFF:
            pipeline.key(code)
        if shown and cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
            pipeline.control(Control.QUIT)
    cv2.destroyWindow(title)


def prepare_sources(paths: Sequence[Path | None], crop_size: int, output_size: tuple[int, int]) -> list[PreparedSource]:
    """The source photos (None: the built-in face), cut to the output size."""
    from livefake.source import default_face, prepare_source

    prepared = []
    for path in paths:
        if path is None:
            prepared.append(prepare_source(default_face(), crop_size=crop_size, output_size=output_size,
                                           name="built-in face"))
        else:
            prepared.append(prepare_source(path, crop_size=crop_size, output_size=output_size))
    return prepared
