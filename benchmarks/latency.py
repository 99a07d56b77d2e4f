"""Latency of the live pipeline: a shared clip paced as a 30 fps webcam (looping) into the null sink.

Reports, after a warm-up, per-stage service time and queue wait, end-to-end latency from capture to
sink (p50/p95/p99; each frame found by the id stamped into its pixels at capture), output fps, drop
rate, jitter (p99 - p50 of output intervals) and resident memory; then an unpaced run for saturation
throughput. Writes JSON and a latency histogram PNG.

    python benchmarks/latency.py --source ../shared/faces/images/glasses_dim.jpg \\
        --driving ../shared/faces/videos/mouth_open.mp4 --seconds 60 --json benchmarks/out/latency.json
"""

from __future__ import annotations

# livefake first: it sets one BLAS and one OpenMP thread before numpy and torch load (an OpenBLAS pool
# spinning on 2 cores cost the live pipeline a fifth of its throughput).
import livefake  # noqa: F401

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from livefake.backends import BackendConfig
from livefake.capture import ClipSource
from livefake.live import LiveConfig, LivePipeline, prepare_sources
from livefake.reenactor import ReenactConfig
from livefake.sinks import NullSink


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(args, paced: bool, seconds: float) -> tuple[dict, list[float]]:
    sources = prepare_sources([args.source], args.crop_size, tuple(args.size))
    clip = ClipSource(args.driving, paced=paced, loop=True, fps=args.fps)
    geometry_thread = {"auto": None, "on": True, "off": False}[args.geometry_thread]
    config = LiveConfig(fps=args.fps, stamp=True, geometry_thread=geometry_thread,
                        reenact=ReenactConfig(backend=BackendConfig(args.backend)))
    pipeline = LivePipeline(sources, clip, [NullSink()], config)
    backend = "; ".join(dict.fromkeys(r.describe() for r in pipeline.reenactors))
    memory = []
    with pipeline:
        pipeline.wait(args.warmup)
        telemetry = pipeline.reset_telemetry()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and pipeline.running:
            memory.append(rss_mb())
            pipeline.wait(min(1.0, max(end - time.perf_counter(), 0)))
        memory.append(rss_mb())
    summary = telemetry.summary()
    e2e = list(telemetry.e2e_ms)
    summary["backend"] = backend
    summary["paced"] = paced
    summary["rss_mb"] = {"start": memory[0], "end": memory[-1], "max": max(memory),
                         "growth_pct": 100 * (memory[-1] - memory[0]) / max(memory[0], 1e-9)}
    return summary, e2e


def histogram_png(values: list[float], path: Path, title: str) -> None:
    """A plain latency histogram drawn with OpenCV (no plotting dependency)."""
    w, h, margin = 800, 400, 50
    image = np.full((h, w, 3), 255, np.uint8)
    if values:
        top = max(np.percentile(values, 99.9) * 1.1, 1.0)
        counts, edges = np.histogram(np.clip(values, 0, top), bins=60, range=(0, top))
        scale = (h - 2 * margin) / max(counts.max(), 1)
        bar = (w - 2 * margin) / len(counts)
        for i, c in enumerate(counts):
            x0 = int(margin + i * bar)
            cv2.rectangle(image, (x0, h - margin - int(c * scale)), (int(x0 + bar) - 1, h - margin), (180, 110, 40), -1)
        for q, colour in ((50, (0, 150, 0)), (99, (0, 0, 200))):
            v = float(np.percentile(values, q))
            x = int(margin + v / top * (w - 2 * margin))
            cv2.line(image, (x, margin), (x, h - margin), colour, 2)
            cv2.putText(image, f"p{q} {v:.1f} ms", (x + 4, margin + 25 + (q // 99) * 18), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, colour, 1, cv2.LINE_AA)
        for k in range(6):
            v = top * k / 5
            x = int(margin + k / 5 * (w - 2 * margin))
            cv2.putText(image, f"{v:.0f}", (x - 10, h - margin + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for i, line in enumerate(title.split("\n")):
        cv2.putText(image, line, (margin, 18 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "end-to-end latency, capture to sink (ms)", (margin, h - 10), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="photo to animate")
    parser.add_argument("--driving", type=Path, required=True, help="clip played as the webcam, looping")
    parser.add_argument("--seconds", type=float, default=60.0, help="paced run length after the warm-up")
    parser.add_argument("--unpaced-seconds", type=float, default=10.0, help="unpaced run length (0: skip)")
    parser.add_argument("--unpaced-runs", type=int, default=3,
                        help="unpaced runs; the median is reported (this machine varies by 10-20 %% run to run)")
    parser.add_argument("--unpaced", action="store_true", help="only the unpaced run, for --seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--fps", type=float, default=30.0, help="pace of the clip (default 30)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    parser.add_argument("--crop-size", type=int, default=256, choices=(256, 512))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--geometry-thread", choices=("auto", "on", "off"), default="auto",
                        help="warp geometry in its own thread (auto: with a GPU backend)")
    parser.add_argument("--json", type=Path, required=True, help="write the figures here")
    parser.add_argument("--histogram", type=Path, help="latency histogram PNG (default beside the JSON)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="livefake: %(message)s")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    try:
        import torch

        machine += f", torch {torch.__version__}"
        machine += f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    except ImportError:
        pass
    result: dict = {"machine": machine, "source": args.source.name, "driving": args.driving.name,
                    "size": list(args.size), "crop_size": args.crop_size}
    if not args.unpaced:
        paced, e2e = run(args, True, args.seconds)
        result.update(paced)
        histogram_png(e2e, args.histogram or args.json.with_suffix(".png"),
                      f"{args.driving.name} paced at {args.fps:g} fps, {paced['backend']}, "
                      f"{paced['frames_out']} frames\n{machine}")
        print(f"paced {args.fps:g} fps for {args.seconds:g} s ({paced['backend']}): {paced['fps_out']:.2f} fps out, "
              f"{paced['drop_rate'] * 100:.2f} % dropped, e2e p50 {paced['e2e_ms']['p50']:.1f} "
              f"p95 {paced['e2e_ms']['p95']:.1f} p99 {paced['e2e_ms']['p99']:.1f} ms, "
              f"jitter {paced['jitter_ms']:.1f} ms, "
              f"stamp mismatches {paced['stamp_mismatches']}, RSS {paced['rss_mb']['start']:.0f} -> "
              f"{paced['rss_mb']['end']:.0f} MB ({paced['rss_mb']['growth_pct']:+.1f} %)")
        for name, stage in paced["stages"].items():
            print(f"  {name:<10} service p50 {stage['service_ms']['p50']:6.2f} p99 {stage['service_ms']['p99']:6.2f} ms"
                  f" | queue wait p50 {stage['wait_ms']['p50']:5.2f} p99 {stage['wait_ms']['p99']:5.2f} ms")
    unpaced_seconds = args.seconds if args.unpaced else args.unpaced_seconds
    if unpaced_seconds > 0:
        runs = [run(args, False, unpaced_seconds)[0] for _ in range(max(args.unpaced_runs, 1))]
        fps = [r["fps_out"] for r in runs]
        unpaced = sorted(runs, key=lambda r: r["fps_out"])[len(runs) // 2]  # the median run
        unpaced["fps_out_runs"] = fps
        result["unpaced"] = unpaced
        if args.unpaced:
            result.update({k: unpaced[k] for k in ("fps_out", "drop_rate", "e2e_ms", "jitter_ms")})
        print(f"unpaced, {len(runs)} runs of {unpaced_seconds:g} s: median {unpaced['fps_out']:.1f} fps out "
              f"(runs: {', '.join(f'{f:.1f}' for f in fps)}), e2e p50 {unpaced['e2e_ms']['p50']:.1f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
