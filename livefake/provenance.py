"""The provenance stage, last on every output frame (live, ``render``, ``demo``): a visible badge and the
invisible watermark of :mod:`livefake.watermark`, both as in-place tensor operations on the frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from livefake import __version__
from livefake import face_regions as fr
from livefake.source import PreparedSource
from livefake.watermark import DEFAULT_PSNR_DB, Embedder, Payload, frame_tensor

# The watermark is held weak on the photo's mouth (livefake.watermark.QUIET_KEEP): fully within this many
# eye distances of the lips' centre, easing to none at the second. The mark is shaped once, so the zone
# stays where the photo has the mouth; the output's follows the head, within it unless the head moves far.
# A wider zone (0.6 to 1.1, the lower face) gave the mouth and self-reenactment scores 0.002 more but cost
# the mark after H.264 a point of bit accuracy and, with the bits' gain raised to make up for it, 1 window
# in 40.
MOUTH_QUIET = (0.4, 0.8)


def around_mouth(source: PreparedSource) -> np.ndarray:
    """(H, W) float32 over ``source.photo``, 1 on the lips and what opens between them, easing to 0 around
    them (:data:`MOUTH_QUIET`): where the watermark is held weak."""
    points = source.transform.to_photo(source.points)
    centre = points[list(fr.LIPS_OUTER)].mean(axis=0)
    iod = fr.interocular(points)
    height, width = source.photo.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    inner, outer = MOUTH_QUIET
    x = np.clip((outer - np.hypot(xs - centre[0], ys - centre[1]) / iod) / (outer - inner), 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def file_tags(what: str) -> dict[str, str]:
    """Container metadata for the files livefake writes, naming livefake, its version and the mark."""
    return {"comment": f"made with livefake {__version__} ({what}); synthetic video: every frame carries "
                       "livefake's invisible watermark, check with 'livefake detect'"}


@dataclass(frozen=True)
class ProvenanceConfig:
    """``badge``: draw ``badge_text`` in the bottom-right corner; ``user_id``: 0-65535 carried in the
    watermark beside livefake's version (0: none); ``psnr_db``: the watermark's strength. ``watermark``
    exists for measurements that need unmarked output (benchmarks/provenance.py); no command turns it off."""

    badge: bool = True
    badge_text: str = "AI"
    user_id: int = 0
    psnr_db: float = DEFAULT_PSNR_DB
    watermark: bool = True

    def __post_init__(self) -> None:
        Payload((0, 0, 0), self.user_id)  # raises for a user id the mark cannot carry
        if self.badge and not self.badge_text.strip():
            raise ValueError("the badge text is empty; give a text or use --no-badge")
        if self.badge and not (self.badge_text.isascii() and self.badge_text.isprintable()):
            raise ValueError("the badge text must be plain ASCII letters, digits and signs (the font has no others)")


class Badge:
    """A small label (white text on a translucent dark box) blended into a frame's bottom-right corner.

    The label is drawn once per frame size; each frame then takes one blend of that small box.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._cache: dict[tuple[int, int, str], tuple[tuple[int, int], torch.Tensor, torch.Tensor]] = {}

    def sprite(self, height: int, width: int) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        """Top-left corner (y, x), (h, w, 3) uint8 colour and (h, w, 1) float32 opacity of the label."""
        scale = max(height, 240) / 720 * 0.8
        thickness = max(1, round(scale * 2.2))
        font = cv2.FONT_HERSHEY_DUPLEX
        (tw, th), base = cv2.getTextSize(self.text, font, scale, thickness)
        pad = max(3, round(th * 0.45))
        bw, bh = min(tw + 2 * pad, width), min(th + base + 2 * pad, height)
        margin = max(2, round(height * 0.02))
        y0, x0 = max(0, height - bh - margin), max(0, width - bw - margin)
        text = np.zeros((bh, bw), np.uint8)
        cv2.putText(text, self.text, (pad, pad + th), font, scale, 255, thickness, cv2.LINE_AA)
        ink = text.astype(np.float32)[..., None] / 255
        colour = np.broadcast_to(ink * 255, (bh, bw, 3)).round().astype(np.uint8)
        opacity = np.maximum(ink, 0.55).astype(np.float32)  # the box behind the text: 55 % black
        return (y0, x0), colour, opacity

    def draw_(self, frame: torch.Tensor) -> None:
        """Blend the label into ``frame`` ((H, W, 3) uint8 tensor) in place."""
        key = (frame.shape[0], frame.shape[1], str(frame.device))
        if key not in self._cache:
            corner, colour, opacity = self.sprite(frame.shape[0], frame.shape[1])
            self._cache[key] = (corner, torch.from_numpy(colour).to(frame.device).float(),
                                torch.from_numpy(opacity).to(frame.device))
        (y0, x0), colour, opacity = self._cache[key]
        box = frame[y0:y0 + colour.shape[0], x0:x0 + colour.shape[1]]
        box.copy_((box.float() * (1 - opacity) + colour * opacity).round_())


class Provenance:
    """The last stage of every output frame: badge (unless turned off), then the watermark.

    The watermark's strength map is taken from the first frame of each size (for livefake's output, the
    source photo); pass-through frames (the webcam itself) get one of their own, from the first of them.
    Not thread-safe: each reenactor's stage is used by one thread at a time (the live pipeline's
    composite thread, or render's main thread).
    """

    def __init__(self, config: ProvenanceConfig | None = None) -> None:
        self.config = config or ProvenanceConfig()
        self.payload = Payload.for_version(__version__, self.config.user_id)
        self.badge = Badge(self.config.badge_text) if self.config.badge else None
        self._embedders = {kind: Embedder(self.payload, self.config.psnr_db)
                           for kind in ("output", "passthrough")} if self.config.watermark else {}

    def prepare(self, reference: np.ndarray, quiet: np.ndarray | None = None) -> None:
        """Shape the output's watermark by ``reference`` ((H, W, 3) uint8 RGB, the source photo), held weak
        where ``quiet`` ((H, W) in [0, 1]) is: see :meth:`livefake.watermark.Embedder.delta`."""
        embedder = self._embedders.get("output")
        if embedder is not None:
            embedder.prepare(np.ascontiguousarray(reference), quiet)

    def apply_(self, frame: np.ndarray | torch.Tensor, *, passthrough: bool = False) -> np.ndarray | torch.Tensor:
        """Mark ``frame`` ((H, W, 3) uint8 RGB, C-contiguous, numpy or torch on any device) in place; return it.
        ``passthrough``: the frame is the webcam's own, not livefake's output."""
        pixels = frame_tensor(frame)  # checked before anything is drawn
        embedder = self._embedders.get("passthrough" if passthrough else "output")
        if embedder is not None and not embedder.prepared(pixels.shape[0], pixels.shape[1]):
            embedder.prepare(pixels.cpu().numpy())  # shaped by the picture, not by the badge
        if self.badge is not None:
            self.badge.draw_(pixels)
        if embedder is not None:
            embedder.mark_(pixels)
        return frame
