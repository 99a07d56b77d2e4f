"""Generator speed and error, every backend that starts on this machine side by side, 256 and 512.

Inputs are real: a shared photo driven to a wide-open mouth by a shared clip (the landmarks, warp and
mouth interior the live app would compute). Error is the max absolute difference of the float crop
against torch fp32 on the CPU. Wall time per call includes the host-device copies; for CUDA the GPU
time alone (CUDA events) is reported too.

    python benchmarks/generator.py --json benchmarks/out/generator.json
"""

from __future__ import annotations

# livefake first: it sets one BLAS and one OpenMP thread before numpy and torch load (an OpenBLAS pool
# spinning on 2 cores cost the live pipeline a fifth of its throughput).
import livefake  # noqa: F401

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from livefake.backends import (  # noqa: E402
    OnnxRuntimeBackend,
    TorchCPUBackend,
    TorchCUDABackend,
    default_cache_dir,
)
from livefake.generator import GeneratorInputs  # noqa: E402
from livefake.tensorrt_engine import TensorRTBackend  # noqa: E402


def real_inputs(size: int, faces: Path):
    """Generator inputs of frame 140 of mouth_open.mp4 driving glasses_dim.jpg (mouth wide open)."""
    import cv2

    from livefake.reenactor import Reenactor
    from livefake.source import prepare_source

    cap = cv2.VideoCapture(str(faces / "videos" / "mouth_open.mp4"))
    source = prepare_source(faces / "images" / "glasses_dim.jpg", crop_size=size)
    with Reenactor(source) as r:
        plan = None
        for i in range(141):
            ok, bgr = cap.read()
            if not ok:
                break
            plan = r.plan_frame(np.ascontiguousarray(bgr[:, :, ::-1]), i / 30)
        return r.generator_inputs(plan)


def candidates(size: int, cache: Path, graphs: bool):
    yield "cpu", "fp32", lambda: TorchCPUBackend(size)
    yield "onnxruntime", "fp32", lambda: OnnxRuntimeBackend(size, cache)
    if torch.cuda.is_available():
        for precision in ("fp32", "fp16"):
            yield "cuda", precision, lambda p=precision: TorchCUDABackend(size, p, cuda_graph=False)
            if graphs:
                yield "cuda+graph", precision, lambda p=precision: TorchCUDABackend(size, p, cuda_graph=True)
            yield "tensorrt", precision, lambda p=precision: TensorRTBackend(size, p, cache)


# What a live frame sends anew: the motion's tensors, and the source crop (new whenever the eyes move).
PER_FRAME = ("source", "warp_field", "mouth_patch", "mouth_affine", "mouth_mask", "driver_stats", "recolor", "shading")


def measure(backend, inputs, reference: torch.Tensor, seconds: float) -> dict:
    for _ in range(5):
        backend.run(inputs)
    diff = (backend.run_float(inputs) - reference).abs()
    err, mean_err = float(diff.max()), float(diff.mean())
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 20:
        # As in the live app: the source's statistics are the same tensor every frame, the source crop and
        # the motion's tensors are new ones (a backend may keep the former on the device).
        frame = inputs._replace(**{k: getattr(inputs, k).clone() for k in PER_FRAME})
        start = time.perf_counter()
        backend.run(frame)
        times.append((time.perf_counter() - start) * 1000)
    row = {"median_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99)),
           "max_abs_err": err, "mean_abs_err": mean_err, "calls": len(times)}
    if isinstance(backend, TorchCUDABackend):
        gpu = backend.time_gpu_ms(inputs)
        row["gpu_median_ms"] = float(np.median(gpu))
        row["gpu_p99_ms"] = float(np.percentile(gpu, 99))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "faces")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per backend and size")
    parser.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph rows")
    parser.add_argument("--only", nargs="+", metavar="BACKEND", help="only these rows (e.g. cuda cuda+graph)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--inputs", type=Path,
                        help="folder of saved inputs (inputs-SIZE.pt) instead of computing them with MediaPipe")
    parser.add_argument("--save-inputs", type=Path, help="save the computed inputs to this folder and stop")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = default_cache_dir()
    rows = []
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
               + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    print(f"machine: {machine}")
    print(f"{'backend':<12} {'size':>4} {'prec':<5} {'median ms':>9} {'p99 ms':>7} {'gpu ms':>7} {'max err':>8} "
          f"{'mean err':>8}")
    for size in args.sizes:
        if args.inputs:
            saved = torch.load(args.inputs / f"inputs-{size}.pt")
            if not isinstance(saved, dict) or list(saved) != list(GeneratorInputs._fields):
                raise SystemExit(f"{args.inputs / f'inputs-{size}.pt'} was saved for another generator's inputs; "
                                 "save them again with --save-inputs")
            inputs = GeneratorInputs(**saved)
        else:
            inputs = real_inputs(size, args.faces)
        if args.save_inputs:
            args.save_inputs.mkdir(parents=True, exist_ok=True)
            torch.save(inputs._asdict(), args.save_inputs / f"inputs-{size}.pt")  # by name: caught if they change
            continue
        reference = TorchCPUBackend(size).run_float(inputs)
        for name, precision, make in candidates(size, cache, not args.no_graphs):
            if args.only and name not in args.only:
                continue
            try:
                backend = make()
                row = measure(backend, inputs, reference, args.seconds)
                backend.close()
            except Exception as err:  # report and go on
                print(f"{name:<12} {size:>4} {precision:<5} not available: {str(err).splitlines()[0][:80]}")
                continue
            row = {"backend": name, "size": size, "precision": precision, **row}
            rows.append(row)
            gpu = f"{row['gpu_median_ms']:7.3f}" if "gpu_median_ms" in row else f"{'-':>7}"
            print(f"{name:<12} {size:>4} {precision:<5} {row['median_ms']:9.3f} {row['p99_ms']:7.3f} {gpu} "
                  f"{row['max_abs_err']:8.1e} {row['mean_abs_err']:8.1e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
