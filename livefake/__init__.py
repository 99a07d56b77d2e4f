"""livefake: real-time face reenactment of one photo, driven by a webcam or a video."""

import os

# The stages run side by side in threads on few cores: one BLAS and one OpenMP thread per call beat
# thread pools spinning against MediaPipe, the encoder and each other (render at 256 on 2 cores: about
# 46 fps with the default pools, 65 with these; benchmarks/RESULTS.md). Set the variables yourself to override;
# they only take effect when livefake is imported before numpy and torch.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

__version__ = "0.1.0"
