#!/usr/bin/env bash
# One prepared check for a lent NVIDIA GPU, done within 7 minutes: the environment, the torch CUDA backend's
# parity with torch on the CPU (pytest, real faces), generator timings of every backend that starts
# (CUDA graphs on and off, fp32 and fp16, 256 and 512), and the live pipeline's latency on the cuda backend.
#
#   LIVEFAKE_FACES=path/to/faces OUT=out/gpu bash benchmarks/gpu_check.sh
#
# On the project's lent machine the packages its image lacks travel as wheels in .whl/ (MediaPipe 0.10.21,
# numpy 1.26, protobuf 4) and a copy of the faces in .faces/; elsewhere install livefake as usual.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
export LIVEFAKE_FACES=${LIVEFAKE_FACES:-$(cd .. && pwd)/shared/faces}
export LIVEFAKE_CACHE=${LIVEFAKE_CACHE:-/tmp/livefake-cache}
export PYTHONUNBUFFERED=1
SKIP_ONNX=()
if [ -d .whl ]; then
  # The carried protobuf 4 (MediaPipe needs it) shadows the image's newer one, which its onnx needs.
  SKIP_ONNX=(-k "not onnxruntime and not fp16_export")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
section() { echo; echo "=== $1 ($(date +%T))"; }

section environment
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c "import sys, torch, numpy, cv2; print('python', sys.version.split()[0], '| torch', torch.__version__,
  'CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(), '| numpy', numpy.__version__, '| cv2', cv2.__version__)"
python3 -c "import mediapipe; print('mediapipe', mediapipe.__version__)"
python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>/dev/null || echo "tensorrt: not installed"

section "pytest: backends (CUDA parity on real faces)"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_backends.py "${SKIP_ONNX[@]}"

section "generator: every backend, 256 and 512"
INPUTS=()
[ -d .faces/inputs ] && INPUTS=(--inputs .faces/inputs)
timeout 150 python3 benchmarks/generator.py --faces "$LIVEFAKE_FACES" "${INPUTS[@]}" --seconds 2 --json "$OUT/generator.json"

section "provenance: badge and watermark on a CUDA frame"
timeout 60 python3 benchmarks/provenance_gpu.py

section "latency: live pipeline, cuda backend (paced 30 fps, then unpaced), then cpu backend unpaced"
LAT=(--source "$LIVEFAKE_FACES/images/glasses_dim.jpg" --driving "$LIVEFAKE_FACES/videos/mouth_open.mp4")
timeout 150 python3 benchmarks/latency.py "${LAT[@]}" --backend cuda --seconds 30 --unpaced-seconds 10 \
  --unpaced-runs 3 --json "$OUT/latency_cuda.json"
timeout 60 python3 benchmarks/latency.py "${LAT[@]}" --backend cpu --unpaced --seconds 10 --unpaced-runs 1 \
  --json "$OUT/latency_cpu.json"
section done
