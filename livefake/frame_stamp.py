"""A frame id written into the pixels: a row of black and white blocks in the top-left corner.

The latency benchmark stamps each captured frame and reads the id back from the frame the sink
receives, so each latency is measured on the very frame that was captured (the composite stage copies
the strip from the driving frame into the output; nothing else carries it).
"""

from __future__ import annotations

import numpy as np

BITS = 24
BLOCK = 6  # pixels per bit; survives nothing lossy, needs nothing lossy: the pipeline is in memory
STRIP = (BLOCK, BLOCK * (BITS + 2))  # height, width: a white start block, the bits, a black end block


def write_stamp(rgb: np.ndarray, frame_id: int) -> None:
    """Write ``frame_id`` (mod 2**24) into the top-left strip of ``rgb`` in place."""
    bits = [1] + [(frame_id >> i) & 1 for i in range(BITS)] + [0]
    for i, bit in enumerate(bits):
        rgb[:BLOCK, i * BLOCK:(i + 1) * BLOCK] = 255 if bit else 0


def read_stamp(rgb: np.ndarray) -> int | None:
    """The id in ``rgb``'s top-left strip, or None when no stamp is there."""
    h, w = STRIP
    if rgb.shape[0] < h or rgb.shape[1] < w:
        return None
    blocks = rgb[:h, :w].reshape(h, BITS + 2, BLOCK, -1).mean(axis=(0, 2, 3))
    bits = blocks > 127
    if not bits[0] or bits[-1] or np.any(np.abs(blocks - 127.5) < 64):
        return None
    return int(sum(1 << i for i, b in enumerate(bits[1:-1]) if b))


def copy_stamp(src: np.ndarray, dst: np.ndarray) -> None:
    """Carry the strip from the driving frame into the output frame."""
    h, w = STRIP
    if min(src.shape[0], dst.shape[0]) >= h and min(src.shape[1], dst.shape[1]) >= w:
        dst[:h, :w] = src[:h, :w]
