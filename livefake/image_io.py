"""Reading a still photo into 8-bit RGB, whatever its format, bit depth, alpha or EXIF rotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from livefake.errors import LivefakeError


def load_rgb(path: str | Path) -> np.ndarray:
    """Load an image file as (H, W, 3) uint8 RGB, upright as its EXIF orientation says.

    Handles JPEG, PNG, WebP, BMP and TIFF; grayscale, palette, RGBA (composited on white) and
    16-bit images. Any problem the user can fix raises :class:`LivefakeError` with one line.
    """
    path = Path(path)
    if path.is_dir():
        raise LivefakeError(f"source image '{path}' is a folder; give the path of a photo inside it")
    if not path.is_file():
        raise LivefakeError(f"source image '{path}' does not exist; check the path")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb8(im)
    except UnidentifiedImageError:
        raise LivefakeError(
            f"'{path}' is not an image livefake can read; use a JPEG, PNG or WebP photo"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise LivefakeError(
            f"cannot read image '{path}': the file is truncated or corrupt ({err}); re-save or pick another"
        ) from None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(im, dtype=np.float32)
        top = 65535.0 if wide.max() > 255 else 255.0
        gray = np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == "F":
        gray = np.clip(np.asarray(im, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
