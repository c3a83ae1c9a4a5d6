"""uint8 RGB images: reading a file whatever its mode, finding image files in folders, and the SR papers' bicubic
resizing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vsr.errors import VsrError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    squeeze = img.ndim == 3 and img.shape[2] == 1
    pil = Image.fromarray(img[..., 0] if squeeze else img)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC))
    return out[..., None] if squeeze else out


def bicubic_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize (a = -0.5, Pillow, antialiased when shrinking) of a uint8 (H, W, C) image to any size."""
    return _resize(img, width, height)


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscaling: the LR image of the SR papers' protocol (used by training and ``vsr eval``).

    Pillow's BICUBIC resize widens its cubic kernel (a = -0.5) by the scale factor when shrinking, which is what
    MATLAB's ``imresize`` does; on Set5 x4 it reproduces the published bicubic baseline (28.43 dB Y-PSNR).

    Args:
        hr: (H, W, C) or (H, W) uint8 image. If H or W is not a multiple of ``scale``, the bottom/right remainder is
            cropped first (the usual mod-crop), so the output is exactly (H // scale, W // scale).
        scale: Integer downscaling factor.

    Returns:
        uint8 image of shape (H // scale, W // scale, C).
    """
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    return _resize(hr, w // scale, h // scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling (a = -0.5, Pillow), the "bicubic" baseline of SR tables.

    Args:
        lr: (h, w, C) or (h, w) uint8 image.
        scale: Integer upscaling factor.

    Returns:
        uint8 image of shape (h * scale, w * scale, C).
    """
    h, w = lr.shape[:2]
    return _resize(lr, w * scale, h * scale)


def load_image(path: str | Path) -> np.ndarray:
    """Reads an image file as uint8 (H, W, 3) RGB, whatever its mode (grayscale, palette, RGBA, 16-bit).

    EXIF orientation is applied, so the pixels are the picture a viewer shows.

    Raises:
        VsrError: the file is missing or is not a readable image.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I;16"):
                # Pillow's convert("RGB") clips 16-bit values instead of scaling them.
                gray = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise VsrError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VsrError(f"cannot read image {path}: {e}") from None


def list_images(folder: str | Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Image files (png, jpg, jpeg, bmp, webp) under a folder, recursively, sorted; hidden files are skipped.

    Args:
        folder: A folder, or a single image file (returned alone).
        exclude: Names of sub-folders to leave out, e.g. ``("holdout",)`` for a :func:`prepare_frames` folder.

    Raises:
        VsrError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder] if folder.suffix.lower() in IMAGE_EXTS else []
    if not folder.is_dir():
        raise VsrError(f"no such folder: {folder}")
    skip = set(exclude)
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.suffix.lower() not in IMAGE_EXTS or any(p.startswith(".") for p in parts):
            continue
        if skip.intersection(parts[:-1]) or not path.is_file():
            continue
        found.append(path)
    return sorted(found)
