"""``livefake doctor``: what this machine has and what livefake will use; ``livefake build-engine``.

Each check is one line: what was found, or what is missing and how to get it. Nothing here raises for
a missing part; the report is the answer.
"""

from __future__ import annotations

import importlib
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from livefake import __version__
from livefake.errors import LivefakeError


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``ok`` False means livefake will go without it (or cannot run)."""

    topic: str
    ok: bool
    text: str


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:  # noqa: BLE001 - a broken install is reported, not raised
        return None


def check_gpu() -> list[Finding]:
    import torch

    found = [Finding("torch", True, f"torch {torch.__version__}")]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        found.append(Finding("gpu", True, f"{torch.cuda.get_device_name()} (compute {major}.{minor}), "
                                          f"CUDA {torch.version.cuda}"))
    else:
        why = "CPU build of torch" if torch.version.cuda is None else "no NVIDIA GPU or driver visible"
        found.append(Finding("gpu", False, f"no CUDA GPU ({why}); the generator runs on the CPU"))
    trt = _version("tensorrt")
    found.append(Finding("tensorrt", trt is not None, f"TensorRT {trt}" if trt else
                         "TensorRT not installed (on an NVIDIA GPU: pip install 'livefake[gpu]')"))
    ort = _version("onnxruntime")
    if ort:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        found.append(Finding("onnxruntime", True, f"ONNX Runtime {ort} ({providers})"))
    else:
        found.append(Finding("onnxruntime", False, "ONNX Runtime not installed (pip install 'livefake[onnx]')"))
    return found


def check_camera(max_index: int = 4) -> Finding:
    from livefake.capture import _open_camera

    for index in range(max_index):
        cap = _open_camera(index)
        if cap.isOpened():
            w, h = int(cap.get(3)), int(cap.get(4))
            cap.release()
            return Finding("webcam", True, f"webcam at index {index} ({w}x{h})")
        cap.release()
    return Finding("webcam", False, f"no webcam at indices 0-{max_index - 1}; plug one in, or use --driving FILE")


def check_virtual_camera() -> Finding:
    from livefake.sinks import VirtualCameraSink

    try:
        sink = VirtualCameraSink(640, 480, 30)
    except LivefakeError as err:
        return Finding("virtual camera", False, str(err))
    device = sink.device
    sink.close()
    return Finding("virtual camera", True, f"virtual camera {device}")


def check_audio() -> Finding:
    try:
        import sounddevice
    except ImportError:
        return Finding("audio", False, "sounddevice not installed (pip install sounddevice); no --audio")
    except OSError as err:  # PortAudio library missing
        return Finding("audio", False, f"PortAudio missing ({err}); on Debian/Ubuntu: sudo apt install libportaudio2")
    devices = sounddevice.query_devices()
    inputs = sum(1 for d in devices if d["max_input_channels"] > 0)
    outputs = sum(1 for d in devices if d["max_output_channels"] > 0)
    return Finding("audio", inputs > 0 and outputs > 0, f"{inputs} audio input(s), {outputs} output(s)")


def check_backend() -> Finding:
    from livefake.backends import start_backend

    logging.getLogger("livefake").setLevel(logging.ERROR)
    backend = start_backend(256)
    text = f"generator backend (auto): {backend.describe()}"
    backend.close()
    return Finding("backend", True, text)


def report() -> list[Finding]:
    """Every check, in the order they print."""
    findings = [Finding("livefake", True, f"livefake {__version__}, Python {platform.python_version()}, "
                                          f"{platform.system()} {platform.machine()}")]
    mp = _version("mediapipe")
    findings.append(Finding("mediapipe", mp is not None, f"MediaPipe {mp}" if mp else "MediaPipe missing"))
    findings += check_gpu()
    findings += [check_backend(), check_camera(), check_virtual_camera(), check_audio()]
    return findings


def print_report(out=sys.stdout) -> int:  # noqa: ANN001 - a text stream
    """Print the report; 0 when livefake can run live here (a webcam and a virtual camera), else 1."""
    findings = report()
    for f in findings:
        print(f"{'ok ' if f.ok else ' - '} {f.topic:<15} {f.text}", file=out)
    live = all(f.ok for f in findings if f.topic in ("webcam", "virtual camera"))
    print("live app: ready" if live else
          "live app: not ready here (see the lines marked -); render and demo work", file=out)
    return 0 if live else 1


def build_engine(crop_size: int, precision: str, cache_dir: Path) -> Path:
    """Compile the TensorRT engine for ``crop_size`` ahead of time; returns the engine file."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise LivefakeError("TensorRT is not installed; on an NVIDIA GPU: pip install 'livefake[gpu]'") from None
    from livefake.backends import BackendConfig, cached_onnx
    from livefake.reenactor import ReenactConfig, Reenactor
    from livefake.source import default_face, prepare_source
    from livefake.tensorrt_engine import TensorRTBackend, engine_paths

    source = prepare_source(default_face(), crop_size=crop_size, name="built-in face")
    # The shapes of a real frame: a still pose of the built-in face.
    with Reenactor(source, ReenactConfig(backend=BackendConfig("cpu"))) as reenactor:
        inputs = reenactor.generator_inputs(reenactor.plan(None, 0.0))
    backend = TensorRTBackend(crop_size, precision, cache_dir)
    backend.run(inputs)
    onnx_path = cached_onnx(crop_size, inputs, cache_dir, precision)  # exported by run() above
    engine, _ = engine_paths(cache_dir, backend.engine_key(onnx_path, inputs))
    return engine
