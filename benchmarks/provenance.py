"""Provenance watermark: robustness, false positives, imperceptibility and speed, beside invisible-watermark.

Marked media: real livefake output (each shared clip driving a shared photo at 1280x720, badge off so
only the watermark is compared), marked by livefake's embedder and, separately, by the
``invisible-watermark`` package's DWT-DCT method (the one Stable Diffusion uses, 32 bits), under the
same attacks: H.264 CRF 30 at 360p (a video call), JPEG 50, a 10 % crop, brightness and contrast, and
combinations. Each 1-second window (30 frames) is one trial:

- livefake: the window's frames averaged and searched (``livefake detect``); detected when p <= 1e-4.
- invisible-watermark: each frame decoded, the bits voted over the window; detected when at least 27 of
  32 bits match (chance: 5.7e-5, the same order of false-positive rate).

False positives: livefake's detector on unmarked windows (the shared clips themselves and the unmarked
outputs, as they are, after H.264 and cropped), single frames of the clips (as they are and cropped) and
the shared photos, with the real key and ``--fpr-keys`` random keys each.

    pip install --no-deps invisible-watermark==0.2.0 PyWavelets==1.8.0   # its own deps would add a 2nd OpenCV
    python benchmarks/provenance.py --json provenance.json
"""

# ruff: noqa: E402
import livefake  # noqa: F401  (first: one BLAS thread)

import argparse
import json
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from livefake import __version__, channel
from livefake.detect import ALPHA
from livefake.provenance import ProvenanceConfig, around_mouth
from livefake.reenactor import ReenactConfig, Reenactor
from livefake.source import PreparedSource, prepare_source
from livefake.video_io import VideoReader
from livefake.watermark import (SCALES, TILE, Embedder, Payload, WatermarkKey, align, aligned_cosines,
                                bits_chi2, canonical_residual, livefake_key, p_value, read_mark)

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"
PAIRS = [("glasses_dim.jpg", "talking.mp4"), ("o_mouth.jpg", "mouth_open.mp4"), ("astronaut.png", "rotation.mp4"),
         ("roll_hand.jpg", "harsh_light.mp4"), ("mouth_open.jpg", "glasses.mp4")]
WINDOW = 30
IW_BITS = 32
IW_THRESHOLD = 27  # of 32 bits: P(>= 27 | chance) = 5.7e-5

ATTACKS = {
    "none": lambda f: list(f),
    "h264_crf30_360p": lambda f: channel.h264(f, 30, 360),
    "jpeg50": lambda f: channel.jpeg(f, 50),
    "crop10": lambda f: channel.crop(f, 0.10),
    "brightness_contrast": lambda f: channel.brightness_contrast(f, 0.8, 30),
    "crop10+h264_crf30_360p": lambda f: channel.h264(channel.crop(f, 0.10), 30, 360),
    "brightness+h264_crf30_360p": lambda f: channel.h264(channel.brightness_contrast(f, 1.2, -20), 30, 360),
    "crop10+brightness+h264_crf30_360p+jpeg50": lambda f: channel.jpeg(
        channel.h264(channel.brightness_contrast(channel.crop(f, 0.10), 0.8, 30), 30, 360), 50),
}


def reenacted(photo: str, clip: str, frames: int) -> tuple[PreparedSource, list[np.ndarray]]:
    """The source and livefake's output for it, unmarked (to measure the mark's cost and false positives)."""
    source = prepare_source(FACES / "images" / photo, output_size=(1280, 720))
    config = ReenactConfig(provenance=ProvenanceConfig(badge=False, watermark=False))
    with VideoReader(FACES / "videos" / clip, max_frames=frames) as reader, Reenactor(source, config) as r:
        return source, [r.process(f.rgb, f.time_s).frame for f in reader]


def windows(frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [frames[i:i + WINDOW] for i in range(0, len(frames) - WINDOW + 1, WINDOW)]


class InvisibleWatermark:
    def __init__(self, bits: np.ndarray) -> None:
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self.bits = [int(b) for b in bits]
        self.encoder = WatermarkEncoder()
        self.encoder.set_watermark("bits", self.bits)
        self.decoder = WatermarkDecoder("bits", IW_BITS)

    def mark(self, rgb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1])

    def read_window(self, frames: list[np.ndarray]) -> tuple[bool, float]:
        votes = np.mean([np.array(self.decoder.decode(np.ascontiguousarray(f[:, :, ::-1]), "dwtDct"), float)
                         for f in frames], axis=0)
        matched = int(np.sum((votes > 0.5) == np.array(self.bits, bool)))
        return matched >= IW_THRESHOLD, matched / IW_BITS


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([cv2.PSNR(x, y) for x, y in zip(a, b)]))


def embed_ms(fn, frame: np.ndarray, repeats: int = 30) -> float:
    fn(frame.copy())
    times = []
    for _ in range(repeats):
        work = frame.copy()
        start = time.perf_counter()
        fn(work)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def false_positives(residuals: list[np.ndarray], keys: int) -> dict[str, float]:
    """livefake's detector on unmarked windows, with its own key and ``keys`` random ones."""
    all_keys = [livefake_key()] + [WatermarkKey.create(seed) for seed in range(1, keys + 1)]
    zs, ps = [], []
    for residual in residuals:
        for key, (z, _, dy, dx, phasors) in zip(all_keys, align(residual, all_keys, SCALES)):
            zs.append(z)
            ps.append(p_value(z, bits_chi2(aligned_cosines(phasors, key, dy, dx), key), len(SCALES)))
    zs_arr, p = np.array(zs), np.array(ps)
    hypotheses = TILE * TILE * len(SCALES)
    return {"trials": len(zs), "false_positives": int(np.sum(p <= ALPHA)),
            "false_positive_rate": float(np.mean(p <= ALPHA)), "max_z": float(zs_arr.max()),
            "sync_z_threshold_alone": _z_for(ALPHA / hypotheses), "min_p": float(p.min()),
            "share_p_below_0.1": float(np.mean(p <= 0.1)), "share_p_below_0.01": float(np.mean(p <= 0.01))}


def _z_for(tail: float) -> float:
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2)) > tail else (lo, mid)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (default 60: two 1-s windows)")
    parser.add_argument("--fpr-keys", type=int, default=20, help="random keys per unmarked window (default 20)")
    parser.add_argument("--fpr-frames", type=int, default=10,
                        help="single frames per shared clip also tried unmarked, as they are and cropped (default 10)")
    parser.add_argument("--no-baseline", action="store_true", help="skip invisible-watermark")
    parser.add_argument("--baseline-frames", type=int, default=60,
                        help="frames per clip for invisible-watermark (default 60: it takes ~150 ms a frame)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    payload = Payload.for_version(__version__, 4242)
    ours = Embedder(payload)
    theirs = None
    if not args.no_baseline:
        try:
            theirs = InvisibleWatermark(np.random.default_rng(7).integers(0, 2, IW_BITS))
        except ImportError:
            print("invisible-watermark is not installed (see this file's docstring); measuring livefake alone")
    def livefake_clip(clip: str, frames: list[np.ndarray]) -> list[np.ndarray]:
        embedder = Embedder(payload)  # shaped as the Reenactor shapes it: by the photo, weak around the mouth
        embedder.prepare(sources[clip].photo, around_mouth(sources[clip]))
        return [embedder.mark_(np.array(f)) for f in frames]

    methods = {"livefake": livefake_clip}
    if theirs is not None:
        methods["invisible-watermark dwtDct"] = lambda clip, frames: [theirs.mark(f)
                                                                      for f in frames[:args.baseline_frames]]
    made = {clip: reenacted(photo, clip, args.frames) for photo, clip in PAIRS}
    sources = {clip: source for clip, (source, _) in made.items()}
    clean = {clip: frames for clip, (_, frames) in made.items()}
    print(f"livefake {__version__} provenance benchmark, {platform.processor() or platform.machine()}, "
          f"{len(clean)} clips x {args.frames} frames at 1280x720")

    rows: list[dict[str, object]] = []
    summary: dict[str, dict[str, float]] = {}
    for method, mark in methods.items():
        marked = {clip: mark(clip, frames) for clip, frames in clean.items()}
        one = clean[PAIRS[0][1]][0]
        unmarked = sum((clean[c][:len(m)] for c, m in marked.items()), [])
        summary[method] = {"psnr_db": psnr(sum(marked.values(), []), unmarked),
                           "embed_ms_720p": embed_ms(ours.mark_ if method == "livefake" else theirs.mark, one)}
        print(f"\n{method}: PSNR {summary[method]['psnr_db']:.1f} dB, embed {summary[method]['embed_ms_720p']:.2f} ms"
              " per 720p frame")
        for attack, transform in ATTACKS.items():
            hits, accuracy, intact = [], [], []
            for frames in marked.values():
                means = []
                for win in windows(transform(frames)):
                    if method == "livefake":
                        means.append(np.mean([canonical_residual(f) for f in win], axis=0))
                        reading = read_mark(means[-1])
                        hits.append(reading.marked(ALPHA))
                        accuracy.append(float(np.mean(reading.bits == payload.to_bits())))
                    else:
                        assert theirs is not None
                        found, acc = theirs.read_window(win)
                        hits.append(found)
                        accuracy.append(acc)
                if means:  # the whole clip, as `livefake detect` reads a file: is the payload intact?
                    intact.append(read_mark(np.mean(means, axis=0)).payload == payload)
            row = {"method": method, "attack": attack, "windows": len(hits), "detect_rate": float(np.mean(hits)),
                   "bit_accuracy": float(np.mean(accuracy)), "bit_accuracy_min": float(np.min(accuracy))}
            if intact:
                row["clip_payload_intact"] = float(np.mean(intact))
            rows.append(row)
            whole = f", payload intact in {sum(intact)} of {len(intact)} whole clips" if intact else ""
            print(f"  {attack:42s} detected {row['detect_rate']:6.1%} of {len(hits)} windows, "
                  f"bit accuracy {row['bit_accuracy']:.3f} (worst window {row['bit_accuracy_min']:.3f}){whole}")

    # False positives on real unmarked video: the shared clips themselves and the unmarked outputs.
    residuals = []
    for photo, clip in PAIRS:
        with VideoReader(FACES / "videos" / clip) as reader:
            raw = [f.rgb for f in reader]
        for frames in (raw, clean[clip]):
            for variant in (frames, channel.h264(frames, 30, 360), channel.crop(frames, 0.1)):
                residuals.extend(np.mean([canonical_residual(f) for f in w], axis=0) for w in windows(variant))
        singles = raw[:: max(1, len(raw) // max(args.fpr_frames, 1))][:args.fpr_frames] if args.fpr_frames else []
        residuals.extend(canonical_residual(f) for f in singles + channel.crop(singles, 0.1))
        residuals.append(canonical_residual(cv2.cvtColor(cv2.imread(str(FACES / "images" / photo)), cv2.COLOR_BGR2RGB)))
    fpr = false_positives(residuals, args.fpr_keys)
    print(f"\nlivefake false positives on unmarked real video: {fpr['false_positives']} of {fpr['trials']} trials "
          f"({len(residuals)} windows, single frames and photos x {args.fpr_keys + 1} keys); "
          f"smallest p {fpr['min_p']:.1e}; largest sync z {fpr['max_z']:.2f}; "
          f"p <= 0.1 in {fpr['share_p_below_0.1']:.2%}, p <= 0.01 in {fpr['share_p_below_0.01']:.2%} "
          "(Bonferroni: at most 10 % and 1 %)")
    if theirs is not None:
        print(f"invisible-watermark false positives: chance of >= {IW_THRESHOLD} of {IW_BITS} bits: "
              f"{sum(math.comb(IW_BITS, k) for k in range(IW_THRESHOLD, IW_BITS + 1)) / 2 ** IW_BITS:.1e}")
    if args.json:
        out = []
        for row in rows:
            method = str(row["method"])
            fp = fpr["false_positive_rate"] if method == "livefake" else (
                sum(math.comb(IW_BITS, k) for k in range(IW_THRESHOLD, IW_BITS + 1)) / 2 ** IW_BITS)
            out.append(dict(row, false_positive_rate=fp, **summary[method]))
        args.json.write_text(json.dumps({"machine": platform.platform(), "rows": out, "livefake_fpr": fpr,
                                         "methods": summary}, indent=1))


if __name__ == "__main__":
    main()
