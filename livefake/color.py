"""Colour match: Reinhard mean/std transfer in CIE LAB, in torch (differentiable, exportable to ONNX).

``rgb_to_lab`` / ``lab_to_rgb`` follow sRGB with a D65 white; ``masked_lab_stats`` measures a region;
``reinhard_transfer`` moves an image's statistics from one region's onto another's; ``relight_transfer``
carries a surface into another light: colour as Reinhard's (its spread's ratio bounded), lightness by the
ratio of the regions' mean lightness (the mouth interior moved from the driver's face to the photo).
"""

from __future__ import annotations

import torch

_RGB_TO_XYZ = torch.tensor([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_EPS = 6.0 / 29.0
_RGB_TO_XYZN = _RGB_TO_XYZ / _WHITE[:, None]  # linear RGB to white-normalised XYZ
_XYZN_TO_RGB = torch.linalg.inv(_RGB_TO_XYZN)


_ON_DEVICE: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}


def _constant(matrix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``matrix`` on ``like``'s device and dtype, copied there once (a copy per call would break CUDA-graph
    capture, which forbids host-to-device copies from pageable memory)."""
    if like.device.type == "cpu" and like.dtype == matrix.dtype:
        return matrix
    key = (id(matrix), like.device, like.dtype)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = matrix.to(like)
    return _ON_DEVICE[key]


def _check(image: torch.Tensor, name: str) -> None:
    if torch.jit.is_tracing():  # shapes are static in an export; the check would only warn there
        return
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name}: expected (B, 3, H, W), got {tuple(image.shape)}")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] to LAB (L in [0, 100], a and b roughly [-110, 110])."""
    _check(rgb, "rgb_to_lab")
    lin = torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = _constant(_RGB_TO_XYZN, rgb)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    f = torch.where(xyz > _EPS**3, xyz.clamp_min(_EPS**3) ** (1.0 / 3.0), xyz / (3 * _EPS**2) + 4.0 / 29.0)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_lab`; result clamped to [0, 1]."""
    _check(lab, "lab_to_rgb")
    fy = (lab[:, 0:1] + 16.0) / 116.0
    f = torch.cat([fy + lab[:, 1:2] / 500.0, fy, fy - lab[:, 2:3] / 200.0], dim=1)
    xyz = torch.where(f > _EPS, f**3, 3 * _EPS**2 * (f - 4.0 / 29.0))
    m = _constant(_XYZN_TO_RGB, lab)
    lin = torch.einsum("ij,bjhw->bihw", m, xyz).clamp(0.0, 1.0)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0.0, 1.0)


def masked_lab_stats(lab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and std of ``lab`` (B, 3, H, W) where ``mask`` (B, 1, H, W) weighs pixels.

    Returns (B, 2, 3): row 0 the means, row 1 the standard deviations (at least 1 LAB unit).
    """
    weight = mask / mask.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    mean = (lab * weight).sum(dim=(2, 3))
    var = (((lab - mean[:, :, None, None]) ** 2) * weight).sum(dim=(2, 3))
    return torch.stack([mean, var.clamp_min(1.0).sqrt()], dim=1)


def reinhard_transfer(lab: torch.Tensor, from_stats: torch.Tensor, to_stats: torch.Tensor,
                      max_spread: float = float("inf")) -> torch.Tensor:
    """Map LAB values so that ``from_stats`` (B, 2, C) become ``to_stats`` (B, 2, C), channel by channel
    (C = 3, or a part of LAB): Reinhard et al. 2001, the spreads' ratio held within ``max_spread`` either way."""
    mu_f, sd_f = from_stats[:, 0, :, None, None], from_stats[:, 1, :, None, None]
    mu_t, sd_t = to_stats[:, 0, :, None, None], to_stats[:, 1, :, None, None]
    scale = sd_t / sd_f
    if max_spread != float("inf"):  # a constant of the call, not of the data: the graph stays static
        scale = scale.clamp(1.0 / max_spread, max_spread)
    return (lab - mu_f) * scale + mu_t


def relight_transfer(lab: torch.Tensor, from_stats: torch.Tensor, to_stats: torch.Tensor,
                     max_gain: float = 2.0, max_spread: float = 1.25) -> torch.Tensor:
    """Map LAB values seen in the light of a region with statistics ``from_stats`` (B, 2, 3) into the light
    of one with ``to_stats``: colour (a, b) as :func:`reinhard_transfer` moves it, with the ratio of the
    spreads held within ``max_spread`` either way; lightness so that whatever was k times darker than the
    region stays k times darker.

    A change of light multiplies luminance Y, and L = 116 Y^(1/3) - 16, so it multiplies L + 16 by one
    factor, the ratio of the regions' L + 16 (at most ``max_gain`` either way: 8 times the light). Reinhard's
    shift by the mean keeps the difference in L instead: a mouth 15 L darker than a dim face's skin came out
    15 L darker than a bright photo's skin, pale grey where it should read dark.

    The spread of a skin's colour is its texture and shadows, not its light, and a mouth's colours lie far
    from the skin's: teeth 20 b* below a driver's skin, scaled by mouth_open.jpg's 3.9 times wider spread
    around its lips, came out b* -60, blue."""
    colour = reinhard_transfer(lab[:, 1:], from_stats[:, :, 1:], to_stats[:, :, 1:], max_spread)
    ratio = (to_stats[:, 0, 0] + 16.0) / (from_stats[:, 0, 0] + 16.0)
    gain = ratio.clamp(1.0 / max_gain, max_gain)[:, None, None, None]
    return torch.cat([(lab[:, 0:1] + 16.0) * gain - 16.0, colour], dim=1)


class ReinhardMatch(torch.nn.Module):
    """Module form: recolour ``image`` so its ``mask`` region has the LAB statistics ``target_stats``."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor, target_stats: torch.Tensor) -> torch.Tensor:
        lab = rgb_to_lab(image)
        return lab_to_rgb(reinhard_transfer(lab, masked_lab_stats(lab, mask), target_stats))
