"""Generator backends on this CPU machine: the same crop from torch and ONNX Runtime on real faces, the
fp16 export TensorRT 11 needs, backend choice and fallback, and the engine cache refusing stale or
truncated files (checked without TensorRT, which cannot be installed here)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_generator import frame_inputs

from livefake.backends import (
    BackendConfig,
    OnnxRuntimeBackend,
    TorchCPUBackend,
    export_onnx,
    start_backend,
)
from livefake.errors import LivefakeError
from livefake.tensorrt_engine import EngineKey, load_cached_engine, store_engine


@pytest.mark.parametrize("size", [256, 512])
def test_onnxruntime_backend_matches_torch(tmp_path, size):
    pytest.importorskip("onnxruntime")
    _, inputs = frame_inputs(size=size)
    cpu, ort = TorchCPUBackend(size), OnnxRuntimeBackend(size, tmp_path)
    want, got = cpu.run_float(inputs), ort.run_float(inputs)
    assert (got - want).abs().max() <= 1e-3
    assert np.abs(ort.run(inputs).astype(int) - cpu.run(inputs).astype(int)).max() <= 1
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # exported once, then cached


def test_fp16_export_is_a_valid_half_precision_graph(tmp_path):
    onnx = pytest.importorskip("onnx")
    _, inputs = frame_inputs()
    path = export_onnx(256, inputs, tmp_path / "g16.onnx", precision="fp16")
    model = onnx.load(str(path))
    half = onnx.TensorProto.FLOAT16
    assert all(i.type.tensor_type.elem_type == half for i in model.graph.input)
    assert model.graph.output[0].type.tensor_type.elem_type == half
    ops = {node.op_type for node in model.graph.node}
    assert "GridSample" in ops and not ops & {"Loop", "If"}
    # ONNX Runtime's CPU provider runs it too: the half graph gives the same crop within fp16 rounding.
    ort = pytest.importorskip("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # some CPU builds lack fp16 kernels for GridSample; the checker result stands
        pytest.skip(f"ONNX Runtime CPU cannot run this fp16 graph: {err}")
    got = session.run(None, {i.name: t.half().numpy() for i, t in zip(model.graph.input, inputs)})[0]
    want = TorchCPUBackend(256).run_float(inputs).numpy()
    # Half-precision sample coordinates near 1 step by 2^-11 (0.06 px at 256): a few pixels on sharp
    # edges move by up to a few hundredths; the rest agree to rounding.
    diff = np.abs(got.astype(np.float32) - want)
    assert diff.max() < 4e-2 and np.quantile(diff, 0.999) < 1e-2


def test_auto_takes_torch_on_a_cpu_machine_and_named_gpu_backends_fall_back(caplog):
    assert start_backend(256, BackendConfig("auto")).name == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the fallback path is for machines without one")
    with caplog.at_level(logging.WARNING, logger="livefake"):
        backend = start_backend(256, BackendConfig("cuda"))
    assert backend.name == "cpu"
    assert "backend cuda could not start (torch sees no CUDA GPU" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="livefake"):
        assert start_backend(256, BackendConfig("tensorrt")).name == "cpu"
    assert "backend tensorrt could not start" in caplog.text and len(caplog.records) == 1


def test_onnxruntime_can_be_chosen_and_bad_choices_say_what_exists():
    pytest.importorskip("onnxruntime")
    assert start_backend(256, BackendConfig("onnxruntime")).name == "onnxruntime"
    with pytest.raises(LivefakeError, match="unknown backend 'metal'; choose auto, tensorrt, cuda"):
        BackendConfig("metal")


def _key(**change) -> EngineKey:
    fields = dict(tensorrt="10.13.0", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                  onnx_sha256="ab" * 32, precision="fp16", shapes="0123456789ab")
    fields.update(change)
    return EngineKey(**fields)


def test_engine_cache_reuses_a_whole_file_and_refuses_stale_or_truncated_ones(tmp_path, caplog):
    data = bytes(range(256)) * 64
    path = store_engine(tmp_path, _key(), data)
    assert load_cached_engine(tmp_path, _key()) == data
    # Another TensorRT, GPU or ONNX file is another key: not found, so built afresh.
    assert load_cached_engine(tmp_path, _key(tensorrt="11.0.0")) is None
    assert load_cached_engine(tmp_path, _key(compute_capability="8.9")) is None
    assert load_cached_engine(tmp_path, _key(onnx_sha256="cd" * 32)) is None
    # A truncated engine under the right name is refused with a message.
    path.write_bytes(data[:1000])
    with caplog.at_level(logging.WARNING, logger="livefake"):
        assert load_cached_engine(tmp_path, _key()) is None
    assert "truncated or corrupt; rebuilding" in caplog.text
    # A sidecar that names another key (a hand-copied file) is refused too.
    store_engine(tmp_path, _key(), data)
    other = store_engine(tmp_path, _key(gpu="other"), b"x")
    path.write_bytes(other.read_bytes())
    path.with_suffix(".json").write_text(other.with_suffix(".json").read_text())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="livefake"):
        assert load_cached_engine(tmp_path, _key()) is None
    assert "built for something else" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs it)")
@pytest.mark.parametrize("precision,max_err,mean_err", [("fp32", 1e-3, 1e-5), ("fp16", 0.08, 2e-3)])
def test_cuda_backend_matches_torch_cpu_with_and_without_graphs(precision, max_err, mean_err):
    """fp16 grid coordinates are exact to about 1/8 pixel at 512, so a sharp edge can move a pixel by
    several levels (max error), while the crop as a whole stays within rounding (mean error)."""
    from livefake.backends import TorchCUDABackend

    _, inputs = frame_inputs(size=512)
    want = TorchCPUBackend(512).run_float(inputs)
    plain = TorchCUDABackend(512, precision, cuda_graph=False)
    graphed = TorchCUDABackend(512, precision, cuda_graph=True)
    for backend in (plain, graphed):
        err = (backend.run_float(inputs) - want).abs()
        assert err.max() <= max_err and err.mean() <= mean_err
    # The captured graph reads the buffers each call: a second, different frame must change its output.
    _, other = frame_inputs(size=512, frame=20)
    assert np.array_equal(graphed.run(other), plain.run(other))
    diff = np.abs(graphed.run(other).astype(int) - TorchCPUBackend(512).run(other).astype(int))
    assert diff.mean() <= 255 * mean_err + 0.5
