"""16-bit PNG files through FFmpeg's PNG codec: Pillow reads 48/64-bit colour PNGs as 8 bits and cannot write them,
FFmpeg does both. A PNG file is one PNG packet, so no container is involved."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

from vsr.errors import VsrError
from vsr.video.probe import error_text

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bit_depth(path) -> int | None:
    """The bit depth a PNG's header declares (1..16), or None for a file that is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def read_png16(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decodes a 16-bit PNG (grey, grey + alpha, RGB or RGBA) into (H, W, 3) uint16 RGB and (H, W) uint16 alpha or
    None; grey is repeated into the three channels.

    Raises:
        VsrError: the file does not decode.
    """
    try:
        with open(path, "rb") as f:
            packet = av.Packet(f.read())
        frames = av.CodecContext.create("png", "r").decode(packet)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VsrError(f"cannot read image {path}: {error_text(err)}") from None
    if not frames:
        raise VsrError(f"cannot read image {path}: no picture in it")
    frame = frames[0]
    has_alpha = frame.format.name.startswith(("rgba", "ya"))
    rgba = frame.to_ndarray(format="rgba64le" if has_alpha else "rgb48le")
    rgb = np.ascontiguousarray(rgba[..., :3])
    return rgb, np.ascontiguousarray(rgba[..., 3]) if has_alpha else None


def write_png16(path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Encodes (H, W, 3) uint16 RGB (and (H, W) uint16 alpha) as a 16-bit PNG file at ``path`` (written as given;
    callers write to a temporary name and rename)."""
    if rgb.dtype != np.uint16 or (alpha is not None and alpha.dtype != np.uint16):
        raise ValueError("write_png16 takes uint16 arrays")
    height, width = rgb.shape[:2]
    pixels = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    fmt = "rgb48le" if alpha is None else "rgba64le"
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.time_base = width, height, Fraction(1, 1)
    ctx.pix_fmt = "rgb48be" if alpha is None else "rgba64be"
    try:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=fmt).reformat(format=ctx.pix_fmt)
        packets = ctx.encode(frame) + ctx.encode(None)
        with open(path, "wb") as f:
            f.write(bytes(packets[0]))
    except (av.FFmpegError, OSError) as err:
        raise VsrError(f"cannot write {os.fspath(path)}: {error_text(err)}") from None
