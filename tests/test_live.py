"""The live pipeline on real clips: newest frame wins, frames never reordered, bounded latency, clean
shutdown, a camera that vanishes and comes back, a face that leaves, the controls, the sinks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import face_file, prepared

from livefake.capture import CameraSource, ClipSource
from livefake.errors import LivefakeError
from livefake.frame_queue import LatestQueue
from livefake.frame_stamp import read_stamp, write_stamp
from livefake.live import Control, LiveConfig, LivePipeline
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.sinks import Sink, VirtualCameraSink, virtual_camera_help
from livefake.source import fit_to_size
from livefake.watermark import canonical_residual, read_mark

OUTPUT = (640, 360)


class Collect(Sink):
    """Keeps every published frame's stamp and a copy of each frame."""

    name = "collect"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.stamps: list[int | None] = []
        self.times: list[float] = []

    def send(self, frame: np.ndarray, captured_at: float) -> None:
        self.frames.append(frame.copy())
        self.stamps.append(read_stamp(frame))
        self.times.append(time.perf_counter())


def sources(*names: str):
    return [prepared(name, 256, output_size=OUTPUT) for name in names]


def test_latest_queue_keeps_the_newest_and_counts_drops():
    q: LatestQueue[int] = LatestQueue(depth=2)
    for i in range(10):
        q.put(i)
    assert len(q) == 2 and q.dropped == 8
    assert q.get(timeout=0)[0] == 8 and q.get(timeout=0)[0] == 9
    assert q.get(timeout=0.01) is None
    # A blocking put waits for room instead of dropping; close() wakes a waiting get at once.
    q.put(1), q.put(2)
    threading.Timer(0.1, q.get).start()
    start = time.perf_counter()
    assert q.put(3, block=True) and time.perf_counter() - start >= 0.09 and q.dropped == 8
    waiter = LatestQueue[int]()
    threading.Timer(0.1, waiter.close).start()
    start = time.perf_counter()
    assert waiter.get(timeout=5) is None and time.perf_counter() - start < 1


def test_frame_stamp_round_trip():
    image = np.full((40, 400, 3), 128, np.uint8)
    assert read_stamp(image) is None
    for frame_id in (0, 1, 12345, (1 << 24) - 1):
        write_stamp(image, frame_id)
        assert read_stamp(image) == frame_id


@pytest.mark.parametrize(("geometry_thread", "full_resolution"), [(False, False), (True, False), (False, True)])
def test_pipeline_reenacts_a_paced_clip_in_order_with_the_stamp_on_every_frame(geometry_thread, full_resolution):
    """Also with the face resampled from the photo (a close-up's way), where no crop is generated."""
    sink = Collect()
    clip = ClipSource(face_file("videos", "mouth_open.mp4"), paced=True)
    config = LiveConfig(stamp=True, geometry_thread=geometry_thread,
                        reenact=ReenactConfig(full_resolution_beyond=0.0 if full_resolution
                                              else ReenactConfig.full_resolution_beyond))
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        with LivePipeline(sources("glasses_dim.jpg"), clip, [sink], config) as pipeline:
            pipeline.wait(3.0)
            assert sys.getswitchinterval() == 0.001  # the stages pass the GIL on quickly (livefake.gil)
        assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(before)
    stats = pipeline.telemetry.summary()
    assert ("geometry" in stats["stages"]) == geometry_thread
    assert (pipeline.reenactors[0].backend is None) == full_resolution  # no generator where it would be unused
    ids = [s for s in sink.stamps if s is not None]
    assert len(ids) >= 60 and ids == sorted(ids)  # never reordered
    assert stats["stamp_mismatches"] == 0 and stats["frame_errors"] == 0
    assert stats["e2e_ms"]["count"] == len(set(ids))
    # The output is the photo, reenacted: far from the face it is the photo itself, and the face moves.
    photo = pipeline.reenactors[0].marked_photo  # with its badge and watermark, as every output frame
    x0, y0, x1, y1 = pipeline.reenactors[0].compositor.box
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    outside[:10, :200] = False  # the stamp
    assert all(np.array_equal(f[outside], photo[outside]) for f in sink.frames)
    faces = np.stack([f[y0:y1, x0:x1].astype(np.float32) for f in sink.frames])
    assert faces.std(axis=0).mean() > 2.0


def test_a_slow_stage_drops_old_frames_keeps_order_bounds_latency_and_stops_fast(monkeypatch):
    original = Reenactor.generate

    def slow_generate(self, plan):
        time.sleep(0.1)  # a generator at 10 fps behind a 30 fps camera
        return original(self, plan)

    monkeypatch.setattr(Reenactor, "generate", slow_generate)
    sink = Collect()
    clip = ClipSource(face_file("videos", "talking.mp4"), paced=True)
    pipeline = LivePipeline(sources("astronaut.png"), clip, [sink], LiveConfig(stamp=True, repeat_after=100))
    pipeline.start()
    pipeline.wait(3.0)
    start = time.perf_counter()
    pipeline.stop()
    assert time.perf_counter() - start < 1.0
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("livefake-"))
    stats = pipeline.telemetry.summary()
    ids = [s for s in sink.stamps if s is not None]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert 15 <= len(ids) <= 35  # about 10 fps got through
    assert stats["drop_rate"] > 0.4  # the rest were dropped, not queued
    # Depth-1 queues: a frame waits for at most the frame ahead of it in the slow stage, then its own turn.
    assert stats["e2e_ms"]["p99"] < 450


class VanishingCamera:
    """A cv2.VideoCapture stand-in that plays a real clip, vanishes after ``lose_after`` reads, refuses
    to open ``refusals`` times, then works again."""

    opened = 0

    def __init__(self, path: Path, lose_after: int, refusals: int, state: dict, scale_after: float = 1.0) -> None:
        self.state = state
        state["opens"] = state.get("opens", 0) + 1
        self._ok = state["opens"] == 1 or state["opens"] > 1 + refusals
        self._cap = cv2.VideoCapture(str(path))
        self._lose_after = lose_after if state["opens"] == 1 else 10**9
        self._scale = 1.0 if state["opens"] == 1 else scale_after  # back at another resolution
        self._reads = 0

    def isOpened(self) -> bool:
        return self._ok

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def read(self):
        self._reads += 1
        if self._reads > self._lose_after:
            return False, None
        time.sleep(1 / 30)
        ok, bgr = self._cap.read()
        if not ok:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if ok and self._scale != 1.0:
            bgr = cv2.resize(bgr, None, fx=self._scale, fy=self._scale, interpolation=cv2.INTER_AREA)
        return ok, bgr

    def release(self) -> None:
        self._cap.release()


def test_camera_that_vanishes_keeps_the_output_going_and_reconnects():
    clip = face_file("videos", "mouth_open.mp4")
    state: dict = {}
    camera = CameraSource(0, open_capture=lambda dev: VanishingCamera(clip, 20, 2, state, scale_after=0.75))
    sink = Collect()
    with LivePipeline(sources("glasses_dim.jpg"), camera, [sink], LiveConfig(stamp=True)) as pipeline:
        pipeline.wait(3.5)
    stats = pipeline.telemetry.summary()
    assert camera.reconnects == 1 and state["opens"] == 4  # two refused tries, then back
    assert stats["repeats"] >= 5  # the last frame was re-sent while the camera was gone
    ids = [s for s in sink.stamps if s is not None]
    assert max(ids) > 30  # frames flowed again after the reconnect
    gaps = np.diff(sink.times)
    assert gaps.max() < 0.2  # the sink never went quiet for long
    # It came back at 3/4 of the resolution: the neutral pose was taken again, in the new frame's pixels.
    from livefake.face_regions import interocular

    first = cv2.cvtColor(cv2.VideoCapture(str(clip)).read()[1], cv2.COLOR_BGR2RGB)
    from livefake.landmarks import LandmarkDetector

    with LandmarkDetector(video=False) as detector:
        iod_full = interocular(detector.detect(first).points)
    reference = pipeline.reenactors[0].retargeter._reference
    assert reference is not None and abs(interocular(reference) / iod_full - 0.75) < 0.1


def test_camera_missing_at_start_says_what_to_do():
    with pytest.raises(LivefakeError, match="no webcam at 3; plug one in, pick another with --camera"):
        CameraSource(3, open_capture=lambda dev: cv2.VideoCapture("/nonexistent/camera"))


def test_face_leaving_holds_then_eases_to_the_photo_without_errors():
    clip = face_file("videos", "talking.mp4")
    state: dict = {}

    class NoFaceAfter(VanishingCamera):
        def read(self):
            ok, bgr = super().read()
            if ok and self._reads > 30:
                bgr = np.zeros_like(bgr)  # the driver walked away
            return ok, bgr

    camera = CameraSource(0, open_capture=lambda dev: NoFaceAfter(clip, 10**9, 0, state))
    sink = Collect()
    with LivePipeline(sources("astronaut.png"), camera, [sink], LiveConfig()) as pipeline:
        pipeline.wait(3.0)
    stats = pipeline.telemetry.summary()
    assert stats["faces_lost"] >= 30 and stats["frame_errors"] == 0
    # 0.5 s hold + 0.8 s ease later, the output is the photo's neutral pose again: what a fresh
    # reenactor shows before any driver (the photo through the crop and back).
    used = pipeline.reenactors[0]
    with Reenactor(used.source, used.config) as fresh:
        neutral = fresh.animate(None, 0.0).frame.astype(np.float32)
    assert np.abs(sink.frames[-1].astype(np.float32) - neutral).mean() < 0.5
    assert np.abs(sink.frames[20].astype(np.float32) - neutral).mean() > 1.0  # it was moving before


def test_controls_passthrough_switch_source_mirror_reset_and_quit():
    clip = ClipSource(face_file("videos", "mouth_open.mp4"), paced=True)
    sink = Collect()
    photos = sources("glasses_dim.jpg", "astronaut.png")
    with LivePipeline(photos, clip, [sink], LiveConfig()) as pipeline:
        pipeline.wait(1.0)
        pipeline.key(ord("2"))  # the second photo
        pipeline.wait(0.7)
        n_switched = len(sink.frames)
        pipeline.key(ord("p"))
        pipeline.wait(0.7)
        n_pass = len(sink.frames)
        pipeline.key(ord("p"))
        pipeline.key(ord("m"))
        pipeline.wait(0.5)
        assert pipeline.mirror and pipeline.reenactors[1].retargeter._reference is not None
        pipeline.control(Control.RESET_NEUTRAL)
        pipeline.wait(0.3)
        pipeline.key(ord("q"))
        pipeline.wait(1.0)
        assert not pipeline.running
    corner = (slice(0, 40), slice(-120, None))  # background, far from either face
    first, second = (r.marked_photo[corner].astype(np.float32) for r in pipeline.reenactors)
    assert np.abs(sink.frames[10][corner] - first).mean() < 1
    assert np.abs(sink.frames[n_switched - 1][corner] - second).mean() < 1
    # Pass-through shows the webcam frame itself, fitted to the output size.
    raw = cv2.cvtColor(cv2.VideoCapture(str(face_file("videos", "mouth_open.mp4"))).read()[1], cv2.COLOR_BGR2RGB)
    passed = sink.frames[n_pass - 1]
    assert passed.shape == fit_to_size(raw, *OUTPUT).shape
    # ... carrying livefake's watermark, as every output frame does.
    assert read_mark(canonical_residual(passed)).marked() and not read_mark(canonical_residual(raw)).marked()
    assert np.abs(passed[corner].astype(np.float32) - second).mean() > 10


def test_virtual_camera_sends_where_a_device_exists_and_says_how_to_get_one_where_not():
    pytest.importorskip("pyvirtualcam")
    try:
        sink = VirtualCameraSink(640, 360, 30)
    except LivefakeError as err:
        text = str(err)
        assert text.startswith("no virtual camera (") and virtual_camera_help() in text
        if sys.platform.startswith("linux"):
            assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1" in text
        return
    sink.send(np.zeros((360, 640, 3), np.uint8), time.perf_counter())  # a real device: one frame goes out
    sink.close()


def test_cli_live_from_a_clip_records_and_writes_stats(tmp_path):
    clip = face_file("videos", "mouth_open.mp4")
    photo = face_file("images", "glasses_dim.jpg")
    out, stats = tmp_path / "live.mp4", tmp_path / "stats.json"
    run = subprocess.run([sys.executable, "-m", "livefake", "--source", str(photo), "--driving", str(clip),
                          "--seconds", "2.5", "--record", str(out), "--stats", str(stats), "--size", "640x360",
                          "--no-virtual-camera"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "fps out, latency p50" in run.stderr and "Traceback" not in run.stderr
    data = json.loads(stats.read_text())
    assert data["frames_out"] >= 50 and data["e2e_ms"]["p50"] > 0 and "fps_out" in data and "drop_rate" in data
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 640 and cap.get(cv2.CAP_PROP_FRAME_COUNT) >= 50


def test_cli_live_without_webcam_or_virtual_camera_gives_one_line():
    if cv2.VideoCapture(0).isOpened():
        pytest.skip("this machine has a webcam")
    run = subprocess.run([sys.executable, "-m", "livefake", "--camera", "0"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "livefake: error: no webcam at 0; plug one in, pick another with --camera INDEX|PATH, "
        "or drive from a video with --driving FILE"]


def test_doctor_reports_what_this_machine_lacks_and_what_it_will_use():
    run = subprocess.run([sys.executable, "-m", "livefake", "doctor"], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("ok  livefake") and "MediaPipe 0.10.21" in run.stdout
    assert any("generator backend (auto):" in line for line in lines)
    webcam = next(line for line in lines if " webcam " in line)
    virtual = next(line for line in lines if "virtual camera" in line and "livefake" not in line[:4])
    if cv2.VideoCapture(0).isOpened():
        return  # a machine with a webcam: nothing fixed to compare against
    assert webcam.startswith(" - ") and "no webcam at indices 0-3" in webcam
    assert run.returncode == 1 and lines[-1].startswith("live app: not ready here")
    assert virtual.startswith(("ok ", " - "))


def test_build_engine_without_tensorrt_says_how_to_get_it():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    run = subprocess.run([sys.executable, "-m", "livefake", "build-engine"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == ("livefake: error: TensorRT is not installed; on an NVIDIA GPU: "
                                  "pip install 'livefake[gpu]'")


def test_preview_without_a_display_says_so_instead_of_aborting(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the DISPLAY check is for Linux")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = subprocess.run([sys.executable, "-m", "livefake", "--driving", str(face_file("videos", "mouth_open.mp4")),
                          "--preview", "--no-virtual-camera"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("livefake: error: no display for the preview window")


def test_preview_window_keys_switch_source_pass_through_and_quit(tmp_path):
    """Under a virtual X display (Xvfb) with keys sent by xdotool, where both are installed."""
    import shutil

    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("needs Xvfb and xdotool (Debian packages xvfb, xdotool) for a window without a screen")
    display = ":87"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = dict(os.environ, DISPLAY=display)
    out = tmp_path / "preview.mp4"
    try:
        time.sleep(1.0)
        app = subprocess.Popen(
            [sys.executable, "-m", "livefake", "--driving", str(face_file("videos", "mouth_open.mp4")),
             "--source", str(face_file("images", "glasses_dim.jpg")),
             "--source", str(face_file("images", "astronaut.png")), "--size", "640x360",
             "--preview", "--record", str(out), "--no-virtual-camera", "--seconds", "40"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        windows: list[str] = []
        deadline = time.time() + 30
        while not windows and time.time() < deadline:
            time.sleep(0.5)
            windows = subprocess.run(["xdotool", "search", "--name", "livefake"], env=env, capture_output=True,
                                     text=True).stdout.split()
        assert windows, "the preview window never opened"
        window = windows[0]
        time.sleep(1.5)
        for key, pause in (("2", 1.5), ("p", 1.5), ("q", 0)):
            subprocess.run(["xdotool", "key", "--window", window, key], env=env, capture_output=True)
            time.sleep(pause)
        _, err = app.communicate(timeout=20)  # q quits long before --seconds 40
        assert app.returncode == 0, err
    finally:
        xvfb.terminate()
    frames = []
    cap = cv2.VideoCapture(str(out))
    while (got := cap.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    photos = sources("glasses_dim.jpg", "astronaut.png")
    corner = (slice(0, 40), slice(-120, None))

    def near(frame, photo):
        return np.abs(frame[corner].astype(np.float32) - photo.photo[corner]).mean() < 6  # H.264 in between

    kinds = ["first" if near(f, photos[0]) else "second" if near(f, photos[1]) else "webcam" for f in frames]
    # In order: the first photo, the second after "2", then the webcam itself after "p" until "q".
    assert kinds[0] == "first" and "second" in kinds and "webcam" in kinds
    assert kinds.index("second") < kinds.index("webcam")
    assert set(kinds[kinds.index("webcam"):]) == {"webcam"}


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_a_stop_signal_ends_the_run_within_a_second_with_the_recording_whole(tmp_path, signum):
    import signal

    out = tmp_path / "run.mp4"
    app = subprocess.Popen(
        [sys.executable, "-m", "livefake", "--driving", str(face_file("videos", "talking.mp4")), "--size", "640x360",
         "--no-virtual-camera", "--record", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background job ignores it
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and out.stat().st_size > 0):
        time.sleep(0.2)
    time.sleep(2.0)
    app.send_signal(getattr(signal, signum))
    start = time.time()
    _, err = app.communicate(timeout=30)
    assert time.time() - start < 1.5 and app.returncode == 0, err
    assert "fps out, latency p50" in err and "Traceback" not in err
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) >= 30
