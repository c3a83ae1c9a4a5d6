"""Image files: the one reader (:func:`read_image`: 16-bit, alpha and EXIF orientation kept; :func:`load_image`:
uint8 RGB for training and evaluation), the writer (:func:`write_image`: format from the extension), finding image
files in folders, and the SR papers' bicubic resizing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vsr import provenance
from vsr.errors import VsrError
from vsr.video.probe import IMAGE_EXTS
from vsr.video.stills import png_bit_depth, read_png16, write_png16


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


@dataclass
class Picture:
    """An image file's pixels as a viewer shows them (EXIF orientation applied), at the file's own depth.

    Attributes:
        rgb: (H, W, 3) uint8, or uint16 for 16-bit files (full 0..65535 range); grey is repeated into 3 channels.
        alpha: (H, W) transparency of the same dtype, or None.
        icc_profile: the embedded colour profile, carried to the output; None if there is none.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None


def read_image(path: str | Path) -> Picture:
    """Reads any image file vsr takes, for `enhance`, `eval` and training alike (the one image reader).

    16-bit PNGs (grey or colour, with or without alpha) stay 16-bit, through FFmpeg's PNG decoder (Pillow would
    cut colour ones to 8 bits); 16-bit grey TIFFs too; palette, grey and CMYK images become RGB; transparency
    (an alpha channel or a palette's transparent entry) becomes ``alpha``; EXIF orientation is applied.

    Raises:
        VsrError: the file is missing or is not a readable image.
    """
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(_ORIENTATION, 1)
            icc = im.info.get("icc_profile") or None
            if png_bit_depth(path) == 16:
                rgb, alpha = read_png16(path)
                return Picture(_orient(rgb, orientation), None if alpha is None else _orient(alpha, orientation), icc)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                gray = np.asarray(im).astype(np.uint16) if im.mode != "I" else np.asarray(im).clip(0, 65535)
                return Picture(np.ascontiguousarray(np.repeat(gray.astype(np.uint16)[..., None], 3, axis=2)), None, icc)
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
                rgba = np.asarray(im.convert("RGBA"))
                return Picture(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), icc)
            return Picture(np.asarray(im.convert("RGB")), None, icc)
    except FileNotFoundError:
        raise VsrError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VsrError(f"cannot read image {path}: {e}") from None


_ORIENTATION = 0x0112  # the EXIF tag


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1..8) applied to an (H, W[, C]) array, as ImageOps.exif_transpose does to an Image."""
    steps = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
             8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(steps[orientation](img)) if orientation in steps else img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """uint16 (0..65535) to uint8 (0..255), rounded; uint8 is returned as it is."""
    if img.dtype == np.uint8:
        return img
    return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_uint16(img: np.ndarray) -> np.ndarray:
    """uint8 to uint16 (x 257, so 255 -> 65535); uint16 is returned as it is."""
    return img if img.dtype == np.uint16 else img.astype(np.uint16) * 257


def load_image(path: str | Path) -> np.ndarray:
    """Reads an image file as uint8 (H, W, 3) RGB, whatever its mode (grayscale, palette, RGBA, 16-bit): what training
    and evaluation work on. :func:`read_image` with 16 bits rounded to 8 and the alpha left out.

    Raises:
        VsrError: the file is missing or is not a readable image.
    """
    return to_uint8(read_image(path).rgb)


# Formats that hold an alpha channel, and the one that holds 16 bits per channel (through write_png16).
_ALPHA_FORMATS = {".png", ".webp", ".tif", ".tiff"}
_DEEP_FORMATS = {".png"}


def write_image(path: str | Path, picture: Picture, quality: int = 95, tags: dict[str, str] | None = None) -> list[str]:
    """Writes ``picture`` in the format ``path``'s extension names, keeping what that format can hold.

    16 bits stay 16 in PNG (else rounded to 8); alpha is kept in PNG, WebP and TIFF (else dropped); JPEG and WebP are
    written at ``quality`` (JPEG without chroma subsampling from 90 up; WebP 100 is lossless); the colour profile is
    carried over. The file is written as given: callers write to a temporary name and rename. ``tags`` (vsr's
    provenance, `vsr.provenance.model_tags`) go into PNG text chunks, or EXIF and XMP in JPEG / WebP (EXIF in TIFF).

    Returns:
        One line for each thing the format could not keep (for the caller to warn about).

    Raises:
        VsrError: an extension that is not an image format, or a failed write.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    notes = []
    if suffix not in _SAVE_FORMATS:
        raise VsrError(f"cannot write {path}: {suffix or 'no extension'} is not an image format "
                       f"({', '.join(sorted(_SAVE_FORMATS))})")
    alpha = picture.alpha
    if alpha is not None and suffix not in _ALPHA_FORMATS:
        notes.append(f"{suffix} has no transparency: the alpha channel was left out of {path.name}")
        alpha = None
    if tags and suffix == ".bmp":
        notes.append(f"{suffix} holds no metadata: {path.name} does not say which model made it")
    if picture.rgb.dtype == np.uint16 and suffix in _DEEP_FORMATS:
        write_png16(path, picture.rgb, None if alpha is None else to_uint16(alpha))
        if tags:
            provenance.add_png_text(path, tags)
        return notes
    if picture.rgb.dtype == np.uint16:
        notes.append(f"{suffix} holds 8 bits per channel: {path.name} was rounded from 16 bits")
    rgb = to_uint8(picture.rgb)
    im = Image.fromarray(rgb) if alpha is None else Image.fromarray(np.dstack([rgb, to_uint8(alpha)]), "RGBA")
    options: dict = {"icc_profile": picture.icc_profile} if picture.icc_profile else {}
    if suffix in (".jpg", ".jpeg"):
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif suffix == ".webp":
        # exact: keep the colour under fully transparent pixels (the model made it; it is not noise to drop).
        options.update(quality=quality, lossless=quality == 100, exact=True)
    if tags and suffix in (".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
        exif = Image.Exif()
        exif[_DESCRIPTION], exif[_SOFTWARE] = provenance.summary_line(tags), f"vsr {tags.get('version', '')}".strip()
        options.update(exif=exif, xmp=provenance.xmp_packet(tags))
    try:
        im.save(path, format=_SAVE_FORMATS[suffix], **options)
        if tags and suffix == ".png":
            provenance.add_png_text(path, tags)
    except (OSError, ValueError) as e:
        raise VsrError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}") from None
    return notes


_DESCRIPTION, _SOFTWARE = 0x010E, 0x0131  # EXIF ImageDescription, Software


_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}
WRITABLE_EXTS = frozenset(_SAVE_FORMATS)  # the extensions write_image takes


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
