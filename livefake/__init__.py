"""livefake: real-time face reenactment of one photo, driven by a webcam or a video."""

import os

# The stages run side by side in threads on few cores: one BLAS and one OpenMP thread per call beat
# thread pools spinning against MediaPipe, the encoder and each other (render at 256 on 2 cores: about
# 46 fps with the default pools, 65 with these; benchmarks/RESULTS.md). OpenCV's own pool is held to one
# thread too: its helper woke for every resampling and then waited for work in a loop of sched_yield calls,
# 0.9 ms of CPU a frame of `render` at 256 for nothing (benchmarks/RESULTS.md). Set the variables yourself to
# override; the BLAS and OpenMP ones only take effect when livefake is imported before numpy and torch, OpenCV's
# before its first parallel call.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")

__version__ = "0.1.0"
