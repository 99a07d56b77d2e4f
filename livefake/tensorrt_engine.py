"""TensorRT backend: the generator's ONNX export compiled into a cached engine, run on a CUDA stream.

Written for the current Python API of TensorRT 10 and 11 (``pip install livefake[gpu]``): a strongly
typed network (11 has no FP16 builder flag, so fp16 comes from an fp16 ONNX export, and 10 is built the
same way), a timing cache kept beside the engines, named I/O tensors bound with ``set_tensor_address`` and
``execute_async_v3`` on the stage's stream. torch owns the device memory and the stream, so no pycuda or
cuda-python is needed.

Engines are cached under a key of TensorRT version, GPU name, compute capability, ONNX hash, precision
and shapes (:func:`engine_key`). Each engine has a sidecar JSON with its key and the SHA-256 of its bytes:
a file whose sidecar is missing, different or does not match is rebuilt with a message, never loaded.
Nothing here was run on a machine with TensorRT (none can be installed where livefake is developed); the
ONNX it consumes is checked with ONNX Runtime in the tests, and the cache logic is tested without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from livefake.backends import DeviceBackend, cached_onnx, crop_to_uint8_hwc, onnx_input_names, shape_key
from livefake.errors import LivefakeError
from livefake.generator import GeneratorInputs

log = logging.getLogger("livefake")


@dataclass(frozen=True)
class EngineKey:
    """What an engine is only valid for."""

    tensorrt: str
    gpu: str
    compute_capability: str
    onnx_sha256: str
    precision: str
    shapes: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_paths(cache_dir: Path, key: EngineKey) -> tuple[Path, Path]:
    """The engine file and its sidecar for ``key``."""
    stem = cache_dir / f"generator-{key.precision}-{key.digest()}"
    return stem.with_suffix(".engine"), stem.with_suffix(".json")


def load_cached_engine(cache_dir: Path, key: EngineKey) -> bytes | None:
    """The cached engine's bytes if the file is there, whole and made for ``key``; else None, with a
    message when a file was there but could not be trusted."""
    engine, sidecar = engine_paths(cache_dir, key)
    if not engine.exists():
        return None
    try:
        meta = json.loads(sidecar.read_text())
        data = engine.read_bytes()
    except (OSError, ValueError):
        log.warning("engine cache %s has no readable sidecar; rebuilding", engine.name)
        return None
    if meta.get("key") != asdict(key):
        log.warning("engine cache %s was built for something else; rebuilding", engine.name)
        return None
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        log.warning("engine cache %s is truncated or corrupt; rebuilding", engine.name)
        return None
    return data


def store_engine(cache_dir: Path, key: EngineKey, data: bytes) -> Path:
    """Write the engine, then its sidecar (a crash between the two leaves a file that is rebuilt)."""
    engine, sidecar = engine_paths(cache_dir, key)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = engine.with_suffix(".engine.tmp")
    tmp.write_bytes(data)
    tmp.replace(engine)
    sidecar.write_text(json.dumps({"key": asdict(key), "sha256": hashlib.sha256(data).hexdigest()}, indent=1))
    return engine


def _progress_monitor(trt):  # noqa: ANN001, ANN202
    """A TensorRT IProgressMonitor that draws the build's top phase as a tqdm bar."""
    from tqdm import tqdm

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, tqdm] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                self.bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT: {phase_name}", leave=False)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return BuildProgress()


def build_engine(onnx_path: Path, cache_dir: Path, workspace_gib: float = 2.0) -> bytes:
    """Compile ``onnx_path`` into a serialized engine, reusing and updating the timing cache."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise LivefakeError(f"TensorRT could not parse the generator's ONNX ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    timing_path = cache_dir / f"timing-{trt.__version__}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)
    monitor = _progress_monitor(trt)
    config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise LivefakeError("TensorRT failed to build the generator engine (see the messages above)")
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16}


class TensorRTBackend(DeviceBackend):
    """The generator as a TensorRT engine, bound to torch device tensors allocated once (see
    :class:`~livefake.backends.DeviceBackend`) and run with ``execute_async_v3`` on the stage's stream."""

    name = "tensorrt"

    def __init__(self, size: int, precision: str, cache_dir: Path, device: int = 0) -> None:
        import tensorrt as trt  # ImportError: not installed (pip install livefake[gpu])

        super().__init__(size, device)
        self.trt = trt
        self.precision = precision
        self.cache_dir = cache_dir
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)

    def engine_key(self, onnx_path: Path, inputs: GeneratorInputs) -> EngineKey:
        major, minor = torch.cuda.get_device_capability(self.device)
        return EngineKey(self.trt.__version__, torch.cuda.get_device_name(self.device), f"{major}.{minor}",
                         file_sha256(onnx_path), self.precision, shape_key(inputs))

    def _prepare(self, inputs: GeneratorInputs) -> None:
        onnx_path = cached_onnx(self.size, inputs, self.cache_dir, self.precision)
        key = self.engine_key(onnx_path, inputs)
        data = load_cached_engine(self.cache_dir, key)
        engine = self.runtime.deserialize_cuda_engine(data) if data is not None else None
        if engine is None:
            log.warning("building the TensorRT engine for this GPU (once; cached in %s)", self.cache_dir)
            data = build_engine(onnx_path, self.cache_dir)
            store_engine(self.cache_dir, key, data)
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise LivefakeError("TensorRT could not load the engine it just built")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = onnx_input_names()
        dtypes = [_TORCH_DTYPES[engine.get_tensor_dtype(name).name] for name in names]
        for name, t in zip(names, inputs):
            if tuple(engine.get_tensor_shape(name)) != tuple(t.shape):
                raise LivefakeError(f"TensorRT engine input {name} has another shape; delete {self.cache_dir}")
        self._allocate(inputs, dtypes, _TORCH_DTYPES[engine.get_tensor_dtype("crop").name])
        for name, dev in zip(names, self._dev_in):
            self.context.set_tensor_address(name, dev.data_ptr())
        self.context.set_tensor_address("crop", self._dev_crop.data_ptr())

    def _compute(self) -> None:
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise LivefakeError("TensorRT failed to run the generator engine")
            self._dev_out.copy_(crop_to_uint8_hwc(self._dev_crop))

    def close(self) -> None:
        self.context = None
        self.engine = None
