"""Quality of reenactment on the shared clips, judged by MediaPipe on driver and output alike.

For every clip x photo: correlation of mouth opening, eye opening, gaze (the irises' place along the
eyes), yaw, pitch and roll between driver and output; the mouth amplitude ratio; the output's
face-detection rate; and self-reenactment (source = the clip's first frame): PSNR and SSIM inside the
face against the real frames, beside the static photo.
Writes a JSON file, a Markdown table, and a montage PNG per clip into benchmarks/out/ (ignored by git).

    python benchmarks/quality.py [--photos astronaut.png glasses_dim.jpg] [--clips ...] [--max-frames N]
                                 [--self-only] [--unmarked]
"""

from __future__ import annotations

# livefake first: it sets one BLAS and one OpenMP thread before numpy and torch load (an OpenBLAS pool
# spinning on 2 cores cost the live pipeline a fifth of its throughput).
import livefake  # noqa: F401

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from livefake import face_regions as fr
from livefake.landmarks import LandmarkDetector
from livefake.provenance import ProvenanceConfig
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.retarget import euler_from_rotation, head_pose
from livefake.source import prepare_source
from livefake.video_io import VideoReader

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
OUT = Path(__file__).resolve().parent / "out"
CLIPS = ["mouth_open.mp4", "rotation.mp4", "harsh_light.mp4", "glasses.mp4", "talking.mp4"]
PHOTOS = ["astronaut.png", "glasses_dim.jpg", "o_mouth.jpg"]
SIGNALS = ("mouth", "eyes", "gaze", "yaw", "pitch", "roll")


def signals(frames: list[np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """Per-frame mouth, eyes, gaze, yaw, pitch, roll (NaN where no face) and the detection rate."""
    rows = []
    ref = None
    with LandmarkDetector(video=True) as det:
        for rgb in frames:
            face = det.detect(rgb)
            if face is None:
                rows.append([np.nan] * len(SIGNALS))
                continue
            p = face.points.astype(np.float64)
            ref = p if ref is None else ref
            _, rot, _ = head_pose(p, ref)
            rows.append([fr.mouth_openness(p), fr.eye_openness(p), fr.gaze(p), *euler_from_rotation(rot)])
    a = np.array(rows)
    return {k: a[:, i] for i, k in enumerate(SIGNALS)}, float(np.mean(~np.isnan(a[:, 0])))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def face_mask(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points[list(fr.FACE_OVAL), :2].astype(np.int32)), 1)
    return mask.astype(bool)


def psnr_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    diff = (a.astype(np.float64) - b.astype(np.float64))[mask]
    psnr = 10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-10))
    _, ssim_map = structural_similarity(a, b, channel_axis=2, full=True, data_range=255)
    return psnr, float(ssim_map.mean(axis=2)[mask].mean())


def reenact(source, frames: list[np.ndarray], fps: float, crop_size: int, marked: bool = True) -> list[np.ndarray]:
    config = ReenactConfig() if marked else ReenactConfig(provenance=ProvenanceConfig(badge=False, watermark=False))
    with Reenactor(source, config) as r:
        return [r.process(f, i / fps).frame for i, f in enumerate(frames)]


def montage(driver: list[np.ndarray], outputs: list[list[np.ndarray]], path: Path, n: int = 8) -> None:
    idx = np.linspace(0, len(driver) - 1, n).astype(int)
    tile = 192
    rows = [np.hstack([cv2.resize(driver[i], (tile, tile)) for i in idx])]
    for out in outputs:
        h, w = out[0].shape[:2]
        s = tile / max(h, w)
        rows.append(np.hstack([cv2.copyMakeBorder(cv2.resize(out[i], (int(w * s), int(h * s))), 0,
                                                  tile - int(h * s), 0, tile - int(w * s), cv2.BORDER_CONSTANT)
                               for i in idx]))
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=CLIPS)
    ap.add_argument("--photos", nargs="+", default=PHOTOS)
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--json", type=Path, default=OUT / "quality.json")
    ap.add_argument("--summary-only", action="store_true", help="only summarise an earlier run's --json")
    ap.add_argument("--self-only", action="store_true", help="only self-reenactment (no other photos)")
    ap.add_argument("--unmarked", action="store_true",
                    help="without the badge and watermark (what they cost the scores; every output has them)")
    args = ap.parse_args()
    if args.summary_only:
        summarize_file(args.json)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in args.clips:
        with VideoReader(FACES / "videos" / clip, max_frames=args.max_frames) as reader:
            frames = [f.rgb for f in reader]
            fps = float(reader.info.fps)
        drv, _ = signals(frames)
        ranges = {k: float(np.nanmax(v) - np.nanmin(v)) for k, v in drv.items()}
        outputs = []
        for photo in [] if args.self_only else args.photos:
            t0 = time.perf_counter()
            source = prepare_source(FACES / "images" / photo, crop_size=args.crop_size)
            out = reenact(source, frames, fps, args.crop_size, marked=not args.unmarked)
            outputs.append(out)
            got, rate = signals(out)
            row = {"clip": clip, "photo": photo, "frames": len(frames), "detect_rate": rate,
                   "photo_mouth": fr.mouth_openness(source.points), "seconds": time.perf_counter() - t0}
            for k in SIGNALS:
                row[f"{k}_corr"] = corr(drv[k], got[k])
                row[f"{k}_driver_range"] = ranges[k]
            row["mouth_amplitude"] = float(np.nanmax(got["mouth"]) - np.nanmin(got["mouth"])) / max(
                ranges["mouth"], 1e-9)
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        # Self-reenactment: the clip's first frame animated by the clip itself.
        first = prepare_source(frames[0], crop_size=args.crop_size, name=f"{clip} frame 0")
        out = reenact(first, frames, fps, args.crop_size, marked=not args.unmarked)
        outputs.append(out)
        scores, static = [], []
        with LandmarkDetector(video=True) as det:
            for real, fake in zip(frames, out):
                face = det.detect(real)
                if face is None:
                    continue
                mask = face_mask(face.points, real.shape)
                scores.append(psnr_ssim(fake, real[: fake.shape[0], : fake.shape[1]], mask[: fake.shape[0],
                                                                                        : fake.shape[1]]))
                static.append(psnr_ssim(first.photo, real[: fake.shape[0], : fake.shape[1]],
                                        mask[: fake.shape[0], : fake.shape[1]]))
        s, b = np.array(scores), np.array(static)
        row = {"clip": clip, "photo": "self", "psnr": float(s[:, 0].mean()), "ssim": float(s[:, 1].mean()),
               "static_psnr": float(b[:, 0].mean()), "static_ssim": float(b[:, 1].mean())}
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        montage(frames, outputs, OUT / f"montage_{Path(clip).stem}.png")
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": __import__("os").cpu_count(), "crop_size": args.crop_size}
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    summarize(rows)


def summarize_file(path: Path) -> None:
    """Print the summary of a JSON file that :func:`main` wrote."""
    summarize(json.loads(path.read_text())["rows"])


def summarize(rows: list[dict]) -> None:
    """Means over clips, for all photos and for those whose mouth is not already wide open (relative
    motion keeps an open mouth open; a photo's own opening below 0.2 of the eye distance counts),
    counting each correlation only where the driver moves enough for it to mean something (eyes: lid
    range >= 0.15; gaze: >= 0.1 eye widths; angles: >= 5 degrees)."""
    gates = {"eyes": 0.15, "gaze": 0.1, "yaw": 5.0, "pitch": 5.0, "roll": 5.0, "mouth": 0.0}
    every = [r for r in rows if r["photo"] != "self"]
    groups = {"all photos": every, "photos without a wide-open mouth": [r for r in every if r["photo_mouth"] < 0.2]}
    print("\nmetric | " + " | ".join(groups) + " |")
    for k in SIGNALS:
        cells = []
        for group in groups.values():
            vals = [r[f"{k}_corr"] for r in group
                    if r[f"{k}_driver_range"] >= gates[k] and not np.isnan(r[f"{k}_corr"])]
            cells.append(f"{np.mean(vals):.3f} ({len(vals)})" if vals else "- (0)")
        print(f"{k}_corr | " + " | ".join(cells) + " |")
    for k in ("mouth_amplitude", "detect_rate"):
        print(f"{k} | " + " | ".join(f"{np.mean([r[k] for r in g]):.3f} ({len(g)})" for g in groups.values()) + " |")
    ss = [r for r in rows if r["photo"] == "self"]
    for k in ("psnr", "ssim", "static_psnr", "static_ssim"):
        print(f"self_{k} | {np.mean([r[k] for r in ss]):.3f} ({len(ss)}) |")


if __name__ == "__main__":
    main()
