"""Drawing on frames with Pillow: labels in a dark box, rectangles, and the detail-finding that picks crops."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CROP_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 80, 160))  # crop 1, 2, 3: rectangle on the frame = tile border


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (no font file needed, so it works the same everywhere)."""
    return ImageFont.load_default(size=size)


def label(image: Image.Image, text: str, xy: tuple[int, int], size: int = 16, anchor_right: bool = False) -> None:
    """Writes ``text`` in white on a dark box with its top-left corner at ``xy`` (top-right with ``anchor_right``)."""
    draw = ImageDraw.Draw(image)
    face = font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    pad = max(2, size // 4)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = (xy[0] - w, xy[1]) if anchor_right else xy
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(0, 0, 0))
    draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255), font=face)


def label_frame(frame: np.ndarray, text: str, right: bool = False) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 frame with ``text`` in its top-left (or top-right) corner, sized to the frame."""
    image = Image.fromarray(frame)
    size = max(12, min(48, frame.shape[0] // 24))
    margin = size // 2
    label(image, text, (frame.shape[1] - margin if right else margin, margin), size, anchor_right=right)
    return np.asarray(image)


def detailed_regions(frame: np.ndarray, side: int, count: int = 3) -> list[tuple[int, int, int, int]]:
    """The ``count`` non-overlapping ``side`` x ``side`` squares of ``frame`` with the most detail.

    Detail is the summed gradient magnitude of the luma: where upscalers differ most (edges, texture, text), not
    flat sky or black bars.

    Returns:
        ``(x, y, side, side)`` boxes, most detailed first (fewer when the frame holds fewer).
    """
    grey = frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    height, width = grey.shape
    side = min(side, height, width)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, side // 4)
    ys = np.arange(0, height - side + 1, step)
    xs = np.arange(0, width - side + 1, step)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sums = integral[yy + side, xx + side] - integral[yy, xx + side] - integral[yy + side, xx] + integral[yy, xx]
    order = np.argsort(sums, axis=None)[::-1]
    chosen: list[tuple[int, int, int, int]] = []
    for flat in order:
        y, x = int(yy.flat[flat]), int(xx.flat[flat])
        if all(abs(x - cx) >= side or abs(y - cy) >= side for cx, cy, _, _ in chosen):
            chosen.append((x, y, side, side))
            if len(chosen) == count:
                break
    return chosen
