"""The photo's eyes and lips redrawn at about the photo's own resolution, for the full-resolution paste.

Where the crop shrinks the photo's face many times (a close-up), the compositor resamples the face from the
photo itself (:mod:`livefake.compositor`). What the per-frame path draws anew in the source crop, though,
came from the crop: the irises laid where the gaze puts them, the lids and lips slid shut, a wide-open mouth
filled. o_mouth.jpg's 256 crop is 5.4 times smaller than the photo, so its shut eyes and shut lips came out
as soft patches in a sharp face.

Here the same layers (:class:`~livefake.eyes.EyeLayers`, :class:`~livefake.openings.SlidingOpening`) are
built once more on a crop cut as the source crop is, a whole number of times finer (a pixel no larger than
the photo's). The warp field is in the crop's unit coordinates, so it drives them as it is. Each frame they
give only the windows they redraw (the eyes, the lips); the compositor takes those, and the layers' base
around them, where the crop's own changes show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.eyes import EyeLayers
from livefake.mouth import shut_mouth_crop
from livefake.openings import SlidingOpening
from livefake.source import CropTransform, PreparedSource


@dataclass(frozen=True)
class DetailFrame:
    """One frame's eyes and lips at detail resolution, for the compositor.

    ``base``: (D, D, 3) uint8, the detail crop with the irises painted out (and a wide-open mouth filled),
    shared by every frame and never written to; ``patches``: the windows this frame redraws, each (top,
    left, (h, w, 3) uint8); ``transform``: photo pixels to detail pixels; ``shows``: (S, S) float32 in
    [0, 1], where the target crop shows what the frame changed (the compositor takes the detail there).
    """

    base: np.ndarray
    patches: tuple[tuple[int, int, np.ndarray], ...]
    transform: CropTransform
    shows: np.ndarray


def detail_factor(transform: CropTransform) -> int:
    """How many times finer than ``transform``'s crop a detail crop is cut: the least whole number that
    makes its pixel no larger than the photo's (within a tenth, as :meth:`CropTransform.cut` rounds)."""
    return max(1, math.ceil(1.0 / transform.scale - 0.1))


class DetailLayers:
    """The eyes' layers and the lips' opening of ``source`` on a crop ``factor`` times finer than its own;
    ``shut``: whether the retargeter shuts the photo's wide-open mouth (the detail's mouth is filled too)."""

    def __init__(self, source: PreparedSource, shut: bool, factor: int | None = None) -> None:
        crop = source.transform
        self.factor = factor or detail_factor(crop)
        k = self.factor
        matrix = crop.matrix * k
        matrix[:, 2] += (k - 1) / 2.0  # crop pixel i's centre is detail pixel k * i + (k - 1) / 2
        self.transform = CropTransform(matrix=matrix, size=crop.size * k)
        size = self.transform.size
        image = self.transform.cut(source.photo)
        points = self.from_crop(source.points)
        self.eyes = EyeLayers(shut_mouth_crop(image, points) if shut else image, points,
                              patch_size=max(16, size // 8))
        self.lips = SlidingOpening.across(fr.LIPS_INNER_PAIRS, fr.INNER_MOUTH_CORNERS, points, size)
        self._node_maps: tuple[int, np.ndarray] | None = None

    def refit(self, field: np.ndarray) -> np.ndarray:
        """The warp ``field`` ((G, G, 2)) with its nodes moved onto this crop's first and last pixel centres,
        as the layers read a field (the crop's own run from the crop's, half a crop pixel further in)."""
        g = field.shape[0]
        if self._node_maps is None or self._node_maps[0] != g:
            k, fine = self.factor, self.transform.size
            coarse = fine // k
            at = (np.arange(g) * ((fine - 1) / (g - 1)) - (k - 1) / 2.0) / k * ((g - 1) / (coarse - 1))
            self._node_maps = (g, np.ascontiguousarray(np.stack(np.meshgrid(at, at), axis=-1), np.float32))
        return cv2.remap(field, self._node_maps[1], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def from_crop(self, points: np.ndarray) -> np.ndarray:
        """(N, 2+) crop-pixel points (z too, as the crop scales it) in detail pixels, float32."""
        k = self.factor
        out = points.astype(np.float32) * k
        out[:, :2] += (k - 1) / 2.0
        return out

    def frame(self, target: np.ndarray, field: np.ndarray, shows: np.ndarray) -> DetailFrame:
        """The windows redrawn for ``target`` ((478, 2+) landmarks in crop pixels) under the warp ``field``
        ((G, G, 2), :class:`~livefake.warp.WarpSolver`), as the crop's own source is redrawn (the irises laid
        in, the lids and the lips slid shut); ``shows``: where the target crop shows the crop's changes."""
        at = self.from_crop(target)
        field = self.refit(field)
        patches = self.eyes.edits(at, field)
        lips = self.lips.slid(self.eyes.eyeball_chw, at, field)
        if lips is not None:
            patches.append(lips)
        as_image = tuple((p.top, p.left, np.clip(p.pixels.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8))
                         for p in patches)
        return DetailFrame(self.eyes.eyeball, as_image, self.transform, shows)
