"""grid.png: the same frame from every model, one row each: the whole frame (reduced, crops outlined) and two or three
zoomed crops of the most detailed regions, every tile labelled with the model's name."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from vsr.compare.draw import CROP_COLOURS, label

THUMB_WIDTH = 480  # the whole frame's tile
CROP_TILE = 256  # a crop's tile side
GAP = 8


def crop_side(width: int, height: int) -> int:
    """The side in output pixels of the automatically chosen crops: a quarter of the frame's short side, 32..128
    (shown at least 2x in a 256-px tile)."""
    return max(32, min(CROP_TILE // 2, min(width, height) // 4, min(width, height)))


def make_grid(frames: list[tuple[str, np.ndarray]], crops: list[tuple[int, int, int, int]], title: str) -> Image.Image:
    """Lays out the frames, one row per model.

    Args:
        frames: ``(label, (H, W, 3) uint8)`` per model, all of one size.
        crops: ``(x, y, w, h)`` boxes in output pixels (1..3).
        title: the header line (input, time, scale).

    Returns:
        The grid as an RGB image.
    """
    height, width = frames[0][1].shape[:2]
    thumb_w = min(THUMB_WIDTH, width)
    thumb_h = max(1, round(height * thumb_w / width))
    tiles = [_tile_size(w, h) for _, _, w, h in crops]
    header = 64  # the title, then a caption above each crop column
    row_h = max([thumb_h] + [t[1] for t in tiles])
    grid_w = GAP + thumb_w + sum(t[0] + GAP for t in tiles) + GAP
    grid_h = header + len(frames) * (row_h + GAP) + GAP
    grid = Image.new("RGB", (grid_w, grid_h), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    label(grid, title, (GAP, GAP), 16)
    label(grid, "whole frame", (GAP, 38), 14)
    x_pos = GAP + thumb_w + GAP
    for i, ((x, y, w, h), (tw, _)) in enumerate(zip(crops, tiles)):
        label(grid, f"crop {i + 1}: {w}x{h} at ({x},{y})", (x_pos, 38), 14)
        x_pos += tw + GAP
    for row, (name, frame) in enumerate(frames):
        top = header + row * (row_h + GAP)
        image = Image.fromarray(frame)
        thumb = image.resize((thumb_w, thumb_h), Image.Resampling.LANCZOS)
        thumb_draw = ImageDraw.Draw(thumb)
        for i, (x, y, w, h) in enumerate(crops):
            box = [round(v * thumb_w / width) for v in (x, y, x + w, y + h)]
            thumb_draw.rectangle(box, outline=CROP_COLOURS[i % len(CROP_COLOURS)], width=2)
        label(thumb, name, (4, 4), 16)
        grid.paste(thumb, (GAP, top))
        x_pos = GAP + thumb_w + GAP
        for i, ((x, y, w, h), (tw, th)) in enumerate(zip(crops, tiles)):
            # Whole-pixel zoom (nearest): every output pixel shows as a square of one size; a crop larger than the
            # tile is reduced smoothly instead.
            resample = Image.Resampling.NEAREST if tw >= w else Image.Resampling.LANCZOS
            tile = image.crop((x, y, x + w, y + h)).resize((tw, th), resample)
            label(tile, name, (3, 3), 13)
            draw.rectangle((x_pos - 2, top - 2, x_pos + tw + 1, top + th + 1),
                           outline=CROP_COLOURS[i % len(CROP_COLOURS)], width=2)
            grid.paste(tile, (x_pos, top))
            x_pos += tw + GAP
    return grid


def _tile_size(w: int, h: int) -> tuple[int, int]:
    zoom = CROP_TILE // max(w, h)
    if zoom >= 1:
        return w * zoom, h * zoom
    return max(1, CROP_TILE * w // max(w, h)), max(1, CROP_TILE * h // max(w, h))
