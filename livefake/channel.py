"""What a video call or a re-upload does to frames, for checking that the watermark survives it:
H.264 at a quality (CRF) and height, JPEG, a crop, brightness and contrast. Used by the tests and by
benchmarks/provenance.py; each takes and returns lists of (H, W, 3) uint8 RGB frames."""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import cv2
import numpy as np


def h264(frames: Sequence[np.ndarray], crf: int = 30, height: int | None = 360, fps: int = 30,
         preset: str = "veryfast") -> list[np.ndarray]:
    """Downscale to ``height`` (None: keep), encode with libx264 at ``crf`` as a real-time encoder would
    (``preset`` veryfast, 4:2:0), and decode again."""
    h, w = frames[0].shape[:2]
    out_h = height or h
    out_w = max(2, round(w * out_h / h / 2) * 2)
    out_h -= out_h % 2
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        for frame in frames:
            small = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(small), format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def jpeg(frames: Sequence[np.ndarray], quality: int = 50) -> list[np.ndarray]:
    """Each frame through JPEG at ``quality`` (OpenCV's encoder: 4:2:0 chroma)."""
    out = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return out


def crop(frames: Sequence[np.ndarray], fraction: float = 0.10,
         where: tuple[float, float] = (0.3, 0.7)) -> list[np.ndarray]:
    """Cut ``fraction`` of the height and of the width away, split between the sides as ``where``
    (share taken from the top, share from the left) says; the pixels left keep their size."""
    h, w = frames[0].shape[:2]
    ch, cw = round(h * (1 - fraction)), round(w * (1 - fraction))
    y0, x0 = round((h - ch) * where[0]), round((w - cw) * where[1])
    return [np.ascontiguousarray(f[y0:y0 + ch, x0:x0 + cw]) for f in frames]


def brightness_contrast(frames: Sequence[np.ndarray], gain: float = 0.8, offset: float = 30.0) -> list[np.ndarray]:
    """``gain * pixel + offset``, clipped: a camera app's or a call's exposure and contrast change."""
    return [np.clip(f.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8) for f in frames]
