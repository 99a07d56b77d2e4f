"""Lip sync at the output of the live pipeline: the offset between voice and lips.

The live pipeline is driven by a clip (paced as a webcam) with the clip's own audio as the microphone,
played through the app's own delay line (its delay following the measured video latency, as with
``--audio``) on a real-time clock that stands in for the sound card. At the output, the offset between
voice and lips is found by cross-correlating the audio envelope with the mouth opening MediaPipe
measures on the output frames, and the same measure is made on the original clip. A positive offset
means the voice comes after the lips.

    python benchmarks/av_sync.py --driving ../shared/faces/videos/talking.mp4 --json benchmarks/out/av_sync.json
"""

from __future__ import annotations

# livefake first: it sets one BLAS and one OpenMP thread before numpy and torch load.
import livefake  # noqa: F401

import argparse
import json
import logging
import platform
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.audio import ClipAudioPlayer, DelayLine, follow_latency, read_clip_audio
from livefake.capture import ClipSource
from livefake.landmarks import LandmarkDetector
from livefake.live import LiveConfig, LivePipeline, prepare_sources
from livefake.sinks import Sink

RATE = 48000
BLOCK = 480  # 10 ms


class KeepFrames(Sink):
    """Keeps each new output frame (downscaled) with the time it reached the sink."""

    name = "keep"

    def __init__(self, width: int) -> None:
        self.width = width
        self.frames: list[tuple[float, np.ndarray]] = []

    def send(self, frame: np.ndarray, captured_at: float) -> None:
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (self.width, int(h * self.width / w)), interpolation=cv2.INTER_AREA)
        self.frames.append((time.perf_counter(), small))


def envelope_at(samples: np.ndarray, times_s: np.ndarray, window_s: float = 0.04) -> np.ndarray:
    """RMS of mono ``samples`` (at RATE, time 0 = sample 0) in a window centred on each time."""
    power = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    half = int(window_s * RATE / 2)
    centre = np.round(times_s * RATE).astype(int)
    lo, hi = np.clip(centre - half, 0, len(samples)), np.clip(centre + half, 0, len(samples))
    return np.sqrt((power[hi] - power[lo]) / np.maximum(hi - lo, 1))


def best_offset(mouth: np.ndarray, mouth_t: np.ndarray, audio: np.ndarray, audio_t0: float,
                max_lag_s: float = 0.4) -> tuple[float, float]:
    """The lag (s) of the voice after the lips that best correlates the mouth opening (at ``mouth_t``) with
    the audio envelope (audio sample 0 at ``audio_t0``), in 1 ms steps; and that correlation."""
    ok = ~np.isnan(mouth)
    m = (mouth[ok] - mouth[ok].mean()) / (mouth[ok].std() + 1e-9)
    best = (0.0, -2.0)
    for lag in np.arange(-max_lag_s, max_lag_s + 1e-9, 0.001):
        env = envelope_at(audio, mouth_t[ok] + lag - audio_t0)
        e = (env - env.mean()) / (env.std() + 1e-9)
        corr = float((m * e).mean())
        if corr > best[1]:
            best = (float(lag), corr)
    return best


def mouth_series(frames: list[np.ndarray]) -> np.ndarray:
    values = []
    with LandmarkDetector(video=True) as detector:
        for rgb in frames:
            face = detector.detect(rgb)
            values.append(fr.mouth_openness(face.points) if face is not None else np.nan)
    return np.array(values)


def file_offset(path: Path) -> tuple[float, float, list[np.ndarray], float]:
    """Voice-after-lips offset and correlation of a video file against its own audio track; its frames
    and frame rate."""
    audio, _ = read_clip_audio(path, RATE)
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while (got := cap.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    offset, corr = best_offset(mouth_series(frames), np.arange(len(frames)) / fps, audio.mean(axis=1), 0.0)
    return offset, corr, frames, fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driving", type=Path, required=True, help="clip with speech (its audio is the mic)")
    parser.add_argument("--source", type=Path, help="photo to animate (default: the built-in face)")
    parser.add_argument("--seconds", type=float, help="how long to run (default: the clip once)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--render", action="store_true",
                        help="also `livefake render` the clip and measure the written file against its own audio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="livefake: %(message)s")
    audio, _ = read_clip_audio(args.driving, RATE)
    mono = audio.mean(axis=1)

    # The original clip: mouth opening at each frame's time against its own audio.
    orig_offset, orig_corr, originals, fps = file_offset(args.driving)

    # The live pipeline: video through the stages, audio through the delay line on a 10 ms clock.
    seconds = args.seconds or len(originals) / fps
    sources = prepare_sources([args.source], 256, (1280, 720))
    sink = KeepFrames(480)
    pipeline = LivePipeline(sources, ClipSource(args.driving, paced=True, loop=False), [sink], LiveConfig())
    line = DelayLine(RATE, 1, delay_s=pipeline.expected_latency_s)  # as --audio starts it
    player = ClipAudioPlayer(mono[:, None].astype(np.float32), line)
    played: list[np.ndarray] = []
    started = threading.Event()
    clock: dict[str, float] = {}

    def sound_card() -> None:  # plays BLOCK samples every 10 ms of wall time, as a device would
        started.wait()
        t0 = clock["t0"]
        n = 0
        while pipeline.running and n * BLOCK < len(mono):
            due = t0 + n * BLOCK / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            played.append(player.next(BLOCK)[:, 0])
            n += 1

    card = threading.Thread(target=sound_card, daemon=True)
    card.start()
    with pipeline:
        clock["t0"] = time.perf_counter()  # the clip's first frame and first sample start together
        started.set()
        follow_latency(pipeline.latency_s, line, lambda: pipeline.running)
        pipeline.wait(seconds + 1.0)
    card.join(timeout=2)
    out_audio = np.concatenate(played) if played else np.zeros(1)
    out_t = np.array([t for t, _ in sink.frames])
    out_offset, out_corr = best_offset(mouth_series([f for _, f in sink.frames]), out_t, out_audio, clock["t0"])
    summary = pipeline.telemetry.summary()
    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "driving": args.driving.name,
        "offset_ms_original": 1000 * orig_offset, "corr_original": orig_corr,
        "offset_ms_output": 1000 * out_offset, "corr_output": out_corr,
        "difference_ms": 1000 * (out_offset - orig_offset),
        "audio_delay_ms_final": 1000 * line.delay_s,
        "video_e2e_ms_p50": summary["e2e_ms"]["p50"],
        "frames_out": len(sink.frames),
    }
    if args.render:
        import tempfile

        from livefake.render import RenderOptions, render_video

        with tempfile.TemporaryDirectory() as tmp:
            rendered = Path(tmp) / "render.mp4"
            render_video(args.source or sources[0], args.driving, rendered,
                         RenderOptions(progress=False, output_size=(1280, 720)))
            render_offset, render_corr, _, _ = file_offset(rendered)
        result.update({"offset_ms_render": 1000 * render_offset, "corr_render": render_corr,
                       "difference_ms_render": 1000 * (render_offset - orig_offset)})
        print(f"render: voice after lips {1000 * render_offset:+.0f} ms (r {render_corr:.2f}), "
              f"{1000 * (render_offset - orig_offset):+.0f} ms from the original")
    print(f"voice after lips: original {result['offset_ms_original']:+.0f} ms (r {orig_corr:.2f}), output "
          f"{result['offset_ms_output']:+.0f} ms (r {out_corr:.2f}); difference {result['difference_ms']:+.0f} ms; "
          f"audio delay {result['audio_delay_ms_final']:.0f} ms, video latency p50 {result['video_e2e_ms_p50']:.0f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
