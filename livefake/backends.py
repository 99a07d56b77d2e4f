"""Generator backends: the one :class:`~livefake.generator.ReenactmentGenerator` run by torch on the CPU,
by ONNX Runtime on the CPU, by torch on CUDA, or by TensorRT (:mod:`livefake.tensorrt_engine`).

Every backend takes a frame's :class:`GeneratorInputs` (CPU float32 tensors) and gives the reenacted crop
as (S, S, 3) uint8. Shapes are static: a backend fixes them at its first frame (the source crop, the warp
grid and the mouth patch never change for one source) and rebuilds if they ever do.

``auto`` takes the fastest that starts on this machine: TensorRT, then torch CUDA, then torch CPU, then ONNX
Runtime (on the 2-core CPU machine torch runs this graph in about half ONNX Runtime's time, one thread
each; benchmarks/RESULTS.md). One that fails to start falls back to the next with one logged line saying why.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from livefake.errors import LivefakeError
from livefake.generator import GeneratorInputs, ReenactmentGenerator, tensor_to_image

log = logging.getLogger("livefake")

BACKEND_NAMES = ("tensorrt", "cuda", "cpu", "onnxruntime")
PRECISIONS = ("fp32", "fp16")


def default_cache_dir() -> Path:
    """Where exported ONNX files and TensorRT engines are kept: ``$LIVEFAKE_CACHE``, else the user's cache."""
    env = os.environ.get("LIVEFAKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livefake"


@dataclass(frozen=True)
class BackendConfig:
    """``backend``: auto or one of :data:`BACKEND_NAMES`; ``precision``: fp32, fp16, or auto (fp16 for
    TensorRT, fp32 elsewhere: on an H100 the torch CUDA backend is no faster in fp16 at these sizes, where
    launches and copies dominate, so it keeps fp32's exactness); ``cuda_graph``: replay the torch CUDA
    backend's kernels as one captured graph."""

    backend: str = "auto"
    precision: str = "auto"
    cuda_graph: bool = True
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        if self.backend not in ("auto", *BACKEND_NAMES):
            raise LivefakeError(f"unknown backend '{self.backend}'; choose auto, {', '.join(BACKEND_NAMES)}")
        if self.precision not in ("auto", *PRECISIONS):
            raise LivefakeError(f"unknown precision '{self.precision}'; choose auto, fp32 or fp16")


class GeneratorBackend(ABC):
    """Runs the generator for one crop size. ``name`` and ``precision`` say what actually runs."""

    name: str = ""
    precision: str = "fp32"

    def __init__(self, size: int) -> None:
        self.size = size

    @abstractmethod
    def run(self, inputs: GeneratorInputs) -> np.ndarray:
        """The reenacted crop, (S, S, 3) uint8, for one frame's inputs."""

    def run_float(self, inputs: GeneratorInputs) -> torch.Tensor:
        """The crop before rounding, (1, 3, S, S) float32 on the CPU (parity checks and benchmarks)."""
        raise NotImplementedError(f"{self.name} gives uint8 crops only")

    def close(self) -> None:
        """Release what the backend holds (device memory, sessions); safe to call twice."""
        return None

    def describe(self) -> str:
        return f"{self.name} {self.precision}"


class TorchCPUBackend(GeneratorBackend):
    """The torch module on the CPU, float32."""

    name = "cpu"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.module = ReenactmentGenerator(size).eval()

    def run_float(self, inputs: GeneratorInputs) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(*inputs)

    def run(self, inputs: GeneratorInputs) -> np.ndarray:
        return tensor_to_image(self.run_float(inputs))


def onnx_input_names() -> list[str]:
    return list(GeneratorInputs._fields)


def export_onnx(size: int, example: GeneratorInputs, path: Path, precision: str = "fp32") -> Path:
    """Export the generator at the shapes of ``example`` to ``path`` (opset 17, static shapes).

    fp16 exports a half-precision graph (inputs and output float16): TensorRT 11 builds strongly typed
    networks only, so its precision comes from the ONNX file.
    """
    import onnx

    module = ReenactmentGenerator(size).eval()
    args = tuple(example)
    if precision == "fp16":
        module = module.half()
        args = tuple(t.half() for t in args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with torch.inference_mode():
        torch.onnx.export(module, args, str(tmp), input_names=onnx_input_names(), output_names=["crop"],
                          opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load(str(tmp)))
    tmp.replace(path)  # never leave a half-written file under the cached name
    return path


def shape_key(example: GeneratorInputs) -> str:
    """A short text naming the input shapes, for cache file names."""
    dims = "_".join("x".join(str(d) for d in t.shape[1:]) for t in example)
    return hashlib.sha256(dims.encode()).hexdigest()[:12]


def cached_onnx(size: int, example: GeneratorInputs, cache_dir: Path, precision: str = "fp32") -> Path:
    """The exported ONNX for these shapes and precision, exported on first use."""
    from livefake import __version__

    path = cache_dir / f"generator-{__version__}-{size}-{precision}-{shape_key(example)}.onnx"
    if not path.exists():
        log.info("exporting the generator to %s", path)
        export_onnx(size, example, path, precision)
    return path


class OnnxRuntimeBackend(GeneratorBackend):
    """The exported ONNX graph in ONNX Runtime's CPU provider, float32. The session is made at the first
    frame, when the shapes are known; ``intra_threads`` 1 leaves the other core to the other stages."""

    name = "onnxruntime"

    def __init__(self, size: int, cache_dir: Path, intra_threads: int = 1) -> None:
        super().__init__(size)
        import onnxruntime  # noqa: F401  (fail here, at start, when it is missing)

        self.cache_dir = cache_dir
        self.intra_threads = intra_threads
        self._session = None
        self._key = ""

    def _session_for(self, inputs: GeneratorInputs):  # noqa: ANN202
        import onnxruntime as ort

        key = shape_key(inputs)
        if self._session is None or key != self._key:
            path = cached_onnx(self.size, inputs, self.cache_dir)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.intra_threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._key = key
        return self._session

    def run_float(self, inputs: GeneratorInputs) -> torch.Tensor:
        session = self._session_for(inputs)
        feeds = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(onnx_input_names(), inputs)}
        return torch.from_numpy(session.run(None, feeds)[0])

    def run(self, inputs: GeneratorInputs) -> np.ndarray:
        return tensor_to_image(self.run_float(inputs))

    def close(self) -> None:
        self._session = None


def crop_to_uint8_hwc(crop: torch.Tensor) -> torch.Tensor:
    """(1, 3, S, S) float in [0, 1] to (S, S, 3) uint8, on the tensor's own device."""
    return crop[0].float().mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


class DeviceBackend(GeneratorBackend):
    """What the GPU backends share: their own CUDA stream, inputs copied through pinned host buffers into
    device tensors allocated once (asynchronously, on the stream), the crop back as uint8 through a
    pinned buffer. Subclasses allocate in :meth:`_prepare` and queue the generator in :meth:`_compute`.
    """

    def __init__(self, size: int, device: int = 0) -> None:
        super().__init__(size)
        if not torch.cuda.is_available():
            raise LivefakeError("torch sees no CUDA GPU (CPU build of torch, or no NVIDIA driver)")
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)
        self._key = ""

    def _allocate(self, inputs: GeneratorInputs, dtypes: list[torch.dtype], crop_dtype: torch.dtype) -> None:
        self._host_in = [torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for t in inputs]
        self._dev_in = [torch.empty(t.shape, dtype=d, device=self.device) for t, d in zip(inputs, dtypes)]
        self._dev_crop = torch.empty((1, 3, self.size, self.size), dtype=crop_dtype, device=self.device)
        self._dev_out = torch.empty((self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        self._host_out = torch.empty((self.size, self.size, 3), dtype=torch.uint8, pin_memory=True)
        self._uploaded: list[tuple[torch.Tensor | None, int]] = [(None, -1)] * len(inputs)
        self._key = shape_key(inputs)

    @abstractmethod
    def _prepare(self, inputs: GeneratorInputs) -> None:
        """Allocate (through :meth:`_allocate`) and build for these shapes."""

    @abstractmethod
    def _compute(self) -> None:
        """Queue the generator on the stream: ``_dev_in`` to ``_dev_crop`` and ``_dev_out``."""

    def _launch(self, inputs: GeneratorInputs) -> None:
        """Copy the inputs up and queue the generator on the stream (returns before it finishes)."""
        if shape_key(inputs) != self._key:
            self._prepare(inputs)
        with torch.cuda.stream(self.stream):
            for i, (host, dev, t) in enumerate(zip(self._host_in, self._dev_in, inputs)):
                # The source's colour statistics are the same tensor every frame, and the source crop is while
                # the eyes hold still (livefake.eyes): send a tensor once (the crop is 3 MB at 512). A tensor
                # changed in place has a new version and is sent again.
                # The reference kept to the last tensor stops its id from being reused by a new one.
                last, version = self._uploaded[i]
                if t is last and t._version == version:
                    continue
                host.copy_(t)  # the last frame's copies are done: run() synchronizes before returning
                dev.copy_(host, non_blocking=True)
                self._uploaded[i] = (t, t._version)
        self._compute()

    def run(self, inputs: GeneratorInputs) -> np.ndarray:
        self._launch(inputs)
        with torch.cuda.stream(self.stream):
            self._host_out.copy_(self._dev_out, non_blocking=True)
        self.stream.synchronize()
        return self._host_out.numpy().copy()

    def run_float(self, inputs: GeneratorInputs) -> torch.Tensor:
        self._launch(inputs)
        self.stream.synchronize()
        return self._dev_crop.float().cpu()


class TorchCUDABackend(DeviceBackend):
    """The torch module on a CUDA GPU, fp32 or fp16, on its own stream (see :class:`DeviceBackend`).
    With ``cuda_graph`` the kernels are captured once and replayed, which removes the per-kernel launch
    cost that dominates a crop this small."""

    name = "cuda"

    def __init__(self, size: int, precision: str = "fp32", cuda_graph: bool = True, device: int = 0) -> None:
        super().__init__(size, device)
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = ReenactmentGenerator(size).to(self.device, self.dtype).eval()
        self.use_graph = cuda_graph
        self._graph: torch.cuda.CUDAGraph | None = None

    def _prepare(self, inputs: GeneratorInputs) -> None:
        self._allocate(inputs, [self.dtype] * len(inputs), self.dtype)
        self._graph = None

    def _forward(self) -> None:
        self._dev_crop.copy_(self.module(*self._dev_in))
        self._dev_out.copy_(crop_to_uint8_hwc(self._dev_crop))

    def _capture(self) -> None:
        # Warm up on the stream (lazy kernel loading, workspace allocation), then capture.
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for _ in range(3):
                self._forward()
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, stream=self.stream):
            self._forward()
        self._graph = graph

    def _compute(self) -> None:
        if self.use_graph and self._graph is None:
            self._capture()
        with torch.cuda.stream(self.stream), torch.inference_mode():
            if self._graph is not None:
                self._graph.replay()
            else:
                self._forward()

    def time_gpu_ms(self, inputs: GeneratorInputs, repeats: int = 200) -> list[float]:
        """GPU time of the generator alone (no host copies), per call, from CUDA events on its stream."""
        self._launch(inputs)
        times = []
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(self.stream)
                self._compute()
                end.record(self.stream)
                end.synchronize()
                times.append(start.elapsed_time(end))
        return times

    def describe(self) -> str:
        graph = " + CUDA graph" if self.use_graph else ""
        return f"cuda {self.precision}{graph} on {torch.cuda.get_device_name(self.device)}"

    def close(self) -> None:
        self._graph = None


def _start(name: str, size: int, config: BackendConfig) -> GeneratorBackend:
    if name == "tensorrt":
        from livefake.tensorrt_engine import TensorRTBackend

        return TensorRTBackend(size, "fp16" if config.precision == "auto" else config.precision, config.cache_dir)
    if name == "cuda":
        return TorchCUDABackend(size, "fp32" if config.precision == "auto" else config.precision, config.cuda_graph)
    if config.precision == "fp16":
        raise LivefakeError(f"{name} runs in fp32 only")
    if name == "onnxruntime":
        return OnnxRuntimeBackend(size, config.cache_dir)
    return TorchCPUBackend(size)


def start_backend(size: int, config: BackendConfig | None = None) -> GeneratorBackend:
    """The backend ``config`` asks for, or for ``auto`` the first of :data:`BACKEND_NAMES` that starts.

    A named backend that cannot start falls back along the same order, with one line saying why; the
    torch CPU backend always starts, so a named backend after it in that order falls back to it.
    """
    config = config or BackendConfig()
    order = list(BACKEND_NAMES)
    if config.backend != "auto":
        order = [config.backend] + [n for n in order[order.index(config.backend) + 1:]] + ["cpu"]
        order = list(dict.fromkeys(order))
    last_reason = ""
    for name in order:
        try:
            backend = _start(name, size, config)
        except (ImportError, LivefakeError, RuntimeError, OSError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            if name == config.backend:
                log.warning("backend %s could not start (%s); falling back", name, reason)
            else:
                log.debug("backend %s not available: %s", name, reason)
            last_reason = reason
            continue
        return backend
    raise LivefakeError(f"no generator backend could start ({last_reason})")

