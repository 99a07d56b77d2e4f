"""Generator: turns the source face crop plus the frame's motion into the reenacted crop.

A torch module with static shapes and no Python branching on data in ``forward``, so the same module
runs on the CPU, on CUDA and as an ONNX export (opset 17: GridSample, Resize, MatMul, Pow, Where).
The motion arrives as tensors prepared on the CPU: a coarse backward warp field (the thin-plate spline
of :mod:`livefake.warp`), the mouth interior (:mod:`livefake.mouth`) and a low-resolution gain that
carries the driver's change of light (:mod:`livefake.shading`).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from livefake.color import lab_to_rgb, relight_transfer, rgb_to_lab


class GeneratorInputs(NamedTuple):
    """Inputs of one frame, batch 1, float32.

    source (1, 3, S, S) in [0, 1]; warp_field (1, G, G, 2) backward map in [-1, 1], x then y;
    mouth_patch (1, 3, M, M) in [0, 1]; mouth_affine (1, 2, 3) crop coords to patch coords;
    mouth_mask (1, 1, S, S) in [0, 1]; driver_stats and source_stats (1, 2, 3) LAB mean and std of the
    skin around the driver's lips (the patch's light) and the source's; recolor (1, 1) in [0, 1];
    shading (1, 3, H, H) gain on the source crop, any fixed H (1 everywhere: the photo's own light).
    """

    source: torch.Tensor
    warp_field: torch.Tensor
    mouth_patch: torch.Tensor
    mouth_affine: torch.Tensor
    mouth_mask: torch.Tensor
    driver_stats: torch.Tensor
    source_stats: torch.Tensor
    recolor: torch.Tensor
    shading: torch.Tensor


def pixel_axis(size: int) -> torch.Tensor:
    """(size,) [-1, 1] coordinates of pixel centres along one axis (align_corners=False)."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


def relit_interior(patch: torch.Tensor, driver_stats: torch.Tensor, source_stats: torch.Tensor,
                   recolor: torch.Tensor) -> torch.Tensor:
    """The driver's mouth ``patch`` ((1, 3, M, M) in [0, 1]) in the source's light, as the crop shows it (the
    :class:`GeneratorInputs` of those names)."""
    patch_lab = rgb_to_lab(patch)
    matched = relight_transfer(patch_lab, driver_stats, source_stats)
    # The skin's colour cast carries over to the interior in proportion to its lightness: a dark mouth
    # shifted by the full skin chroma difference turns blue or green.
    light = (patch_lab[:, 0:1] / driver_stats[:, 0, 0, None, None, None].clamp_min(1.0)).clamp(0.0, 1.0)
    weight = torch.cat([torch.ones_like(light), light, light], dim=1) * recolor[:, :, None, None]
    return lab_to_rgb(patch_lab + weight * (matched - patch_lab))


def reenact_crop(inputs: GeneratorInputs, axis: torch.Tensor) -> torch.Tensor:
    """The reenacted crop (1, 3, S, S) in [0, 1]. ``axis`` is :func:`pixel_axis` of the crop size S."""
    size = axis.shape[0]
    # contiguous() first: bilinear upsampling of a permuted (channels-last) view is 4x slower on the CPU.
    field = F.interpolate(inputs.warp_field.permute(0, 3, 1, 2).contiguous(), size=(size, size),
                          mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    lit = inputs.source * F.interpolate(inputs.shading, size=(size, size), mode="bilinear", align_corners=False)
    warped = F.grid_sample(lit, field, mode="bilinear", padding_mode="border", align_corners=False)
    patch = relit_interior(inputs.mouth_patch, inputs.driver_stats, inputs.source_stats, inputs.recolor)
    # The affine map of every pixel, by broadcasting (half the time of a (S*S, 3) matrix product).
    affine = inputs.mouth_affine[:, None, None]  # (1, 1, 1, 2, 3)
    mouth_grid = axis.view(1, 1, size, 1) * affine[..., 0] + axis.view(1, size, 1, 1) * affine[..., 1] \
        + affine[..., 2]
    mouth = F.grid_sample(patch, mouth_grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped + inputs.mouth_mask * (mouth - warped)


class ReenactmentGenerator(torch.nn.Module):
    """Module form of :func:`reenact_crop` for one crop size; ``forward`` takes the fields of
    :class:`GeneratorInputs` in order."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("axis", pixel_axis(size), persistent=False)

    def forward(
        self,
        source: torch.Tensor,
        warp_field: torch.Tensor,
        mouth_patch: torch.Tensor,
        mouth_affine: torch.Tensor,
        mouth_mask: torch.Tensor,
        driver_stats: torch.Tensor,
        source_stats: torch.Tensor,
        recolor: torch.Tensor,
        shading: torch.Tensor,
    ) -> torch.Tensor:
        inputs = GeneratorInputs(source, warp_field, mouth_patch, mouth_affine, mouth_mask, driver_stats,
                                 source_stats, recolor, shading)
        return reenact_crop(inputs, self.axis)


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 to (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] to (H, W, 3) uint8 (interleaved by OpenCV: half torch's time for a copy
    of the permuted planes)."""
    planes = t[0].mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
    return cv2.merge(list(planes))
