"""The provenance stage on a CUDA frame: the same bytes as on the CPU, and its time per 720p frame.

    python benchmarks/provenance_gpu.py      # on a machine with a CUDA GPU (benchmarks/gpu_check.sh runs it)
"""

# ruff: noqa: E402
import livefake  # noqa: F401  (first: one BLAS thread)

import numpy as np
import torch

from livefake import __version__
from livefake.provenance import Provenance
from livefake.watermark import Payload, canonical_residual, read_mark


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here")
    rng = np.random.default_rng(0)
    frame = np.ascontiguousarray(np.clip(rng.normal(128, 40, (720, 1280, 3)), 0, 255).astype(np.uint8))
    stage = Provenance()
    on_cpu = stage.apply_(frame.copy())
    on_gpu = torch.from_numpy(frame).cuda()
    stage.apply_(on_gpu)
    same = bool(np.array_equal(on_gpu.cpu().numpy(), on_cpu))
    found = read_mark(canonical_residual(on_gpu.cpu().numpy()))
    work = torch.from_numpy(frame).cuda()
    for _ in range(20):
        stage.apply_(work)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(200):
        start.record()
        stage.apply_(work)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    print(f"{torch.cuda.get_device_name()}: badge + watermark on a 720p CUDA frame: median {np.median(times):.3f} ms, "
          f"p99 {np.percentile(times, 99):.3f} ms; bytes equal to the CPU's: {same}; "
          f"detected: {found.marked()} (payload {found.payload}, expected {Payload.for_version(__version__)})")


if __name__ == "__main__":
    main()
