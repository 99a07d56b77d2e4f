"""livefake: real-time face reenactment of one photo, driven by a webcam or a video."""

__version__ = "0.1.0"
