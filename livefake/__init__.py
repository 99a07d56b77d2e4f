"""livefake: real-time face reenactment of one photo, driven by a webcam or a video."""

import os

# The stages run side by side in threads on few cores: one BLAS thread per call beats BLAS threads
# fighting MediaPipe, the encoder and torch (measured in benchmarks/RESULTS.md). Set it to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
