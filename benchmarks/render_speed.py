"""Frames per second of ``livefake render`` (whole run, one process) and the time of each stage.

    python benchmarks/render_speed.py [--clip talking.mp4] [--photo glasses_dim.jpg] [--sizes 256 512]

Writes benchmarks/out/render_speed.json and prints a Markdown table: the median of ``--repeat`` runs
with the slowest and fastest. Wall-clock numbers: run it on an otherwise idle machine and report the
machine with them. Stage times are wall time inside each stage; stages overlap in two threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from livefake.render import RenderOptions, render_video
from livefake.source import prepare_source

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="talking.mp4")
    ap.add_argument("--photo", default="glasses_dim.jpg")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the median run is reported")
    ap.add_argument("--json", type=Path, default=OUT / "render_speed.json")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        source = prepare_source(FACES / "images" / args.photo, crop_size=size)
        options = RenderOptions(crop_size=size, progress=False)
        runs = sorted((render_video(source, FACES / "videos" / args.clip, OUT / f"speed_{size}.mp4", options)
                       for _ in range(args.repeat)), key=lambda r: r.fps)
        report = runs[len(runs) // 2]
        rows.append({"crop_size": size, "frames": report.frames, "seconds": round(report.seconds, 3),
                     "fps": round(report.fps, 1), "fps_min": round(runs[0].fps, 1), "fps_max": round(runs[-1].fps, 1),
                     "stage_ms": {k: round(v, 2) for k, v in report.stage_ms.items()}})
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "clip": args.clip, "photo": args.photo,
            "photo_size": list(source.photo.shape[:2][::-1])}
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    stages = list(rows[0]["stage_ms"])
    print("| crop | fps, median run (min-max) | " + " | ".join(f"{s} ms" for s in stages) + " |")
    print("|---|---|" + "---|" * len(stages))
    for r in rows:
        print(f"| {r['crop_size']} | {r['fps']} ({r['fps_min']}-{r['fps_max']}) | "
              + " | ".join(str(r["stage_ms"][s]) for s in stages) + " |")


if __name__ == "__main__":
    main()
