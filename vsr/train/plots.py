"""The run folder's pictures, drawn with PIL: curves.png from log.jsonl, the sample grids (LR | bicubic | SR | HR)
and degradation_example.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vsr import data
from vsr.atomic import atomic_write
from vsr.train.config import TrainConfig


def _nearest_up(img: np.ndarray, factor: int) -> np.ndarray:
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


def _grid(rows: list[list[np.ndarray]], labels: list[str], path: Path) -> None:
    """Images (all the same size) in rows, a label over each column, white gaps; written as PNG."""
    gap, head = 4, 16
    zoom = math.ceil(96 / rows[0][0].shape[1])  # small crops are enlarged (nearest) so the labels fit
    if zoom > 1:
        rows = [[_nearest_up(img, zoom) for img in row] for row in rows]
    h, w = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (len(labels) * (w + gap) + gap, head + len(rows) * (h + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, label in enumerate(labels):
        draw.text((gap + c * (w + gap), 2), label, fill="black", font=font)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas.paste(Image.fromarray(img), (gap + c * (w + gap), head + gap + r * (h + gap)))
    canvas.save(path)


def _center(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def sample_grid(shown: list, scale: int, step: int, path: Path) -> None:
    """LR (nearest) | bicubic | SR | HR for up to three validation images, centre squares of at most 192 px."""
    if not shown:
        return
    side = min(min(hr.shape[:2]) for hr, *_ in shown)
    side = min(side, 48 * scale) // scale * scale
    rows = []
    for hr, lr, bicubic, sr in shown:
        lr_up = _nearest_up(lr, scale)
        rows.append([_center(img, side) for img in (lr_up, bicubic, sr, hr)])
    _grid(rows, ["LR (nearest)", "bicubic", f"SR step {step}", "HR"], path)


def degradation_example(dataset, degradation, cfg: TrainConfig, path: Path) -> None:
    """HR | bicubic LR | realistic LR (both nearest-upscaled) from the first training image, seeded by the run."""
    hr = data.load_image(dataset.paths[0])
    side = min(min(hr.shape[:2]), 64 * cfg.scale) // cfg.scale * cfg.scale
    hr = np.ascontiguousarray(_center(hr, side))
    bicubic = _nearest_up(data.bicubic_downscale(hr, cfg.scale), cfg.scale)
    realistic = _nearest_up(degradation(hr, cfg.scale, np.random.default_rng(cfg.seed)), cfg.scale)
    _grid([[hr, bicubic, realistic]], ["HR", "bicubic LR", "realistic LR"], path)


def draw_curves(log_path: Path, out_path: Path) -> None:
    """curves.png from log.jsonl: one panel per loss (log scale), one for validation PSNR against bicubic's (and the
    temporal error against bicubic's, where validation played sequences)."""
    if not log_path.exists():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    series: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        for name, value in rec.get("losses", {}).items():
            if value > 0 and math.isfinite(value):
                series.setdefault(name, []).append((rec["step"], value))
    psnr = [(r["step"], r["val"]["psnr_y"]) for r in records if "val" in r]
    bicubic = [(r["step"], r["val"]["bicubic_psnr_y"]) for r in records if "val" in r]
    panels = [(f"{name} loss (log10)", [pts], True) for name, pts in series.items()]
    if psnr:
        panels.append(("validation PSNR-Y dB (grey: bicubic)", [psnr, bicubic], False))
    vals = [r for r in records if "temporal_error_y" in r.get("val", {})]  # sequence runs (--frames)
    if vals:
        panels.append(("validation temporal error, grey levels (grey: bicubic)",
                       [[(r["step"], r["val"]["temporal_error_y"]) for r in vals],
                        [(r["step"], r["val"]["bicubic_temporal_error_y"]) for r in vals]], False))
    if not panels:
        return
    pw, ph, cols = 420, 240, 2
    rows = math.ceil(len(panels) / cols)
    canvas = Image.new("RGB", (pw * min(cols, len(panels)), ph * rows), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, lines, log) in enumerate(panels):
        _panel(draw, (i % cols) * pw, (i // cols) * ph, pw, ph, title, lines, log)
    with atomic_write(out_path) as temp:
        canvas.save(temp, format="PNG")


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, w: int, h: int, title: str, lines: list, log: bool) -> None:
    """One line plot: title, axes box, min/max ticks on both axes, the first line black, the others grey."""
    font = ImageFont.load_default()
    left, right, top, bottom = x0 + 60, x0 + w - 12, y0 + 22, y0 + h - 26
    draw.text((x0 + 8, y0 + 4), title, fill="black", font=font)
    draw.rectangle((left, top, right, bottom), outline="black")
    points = [(x, math.log10(y) if log else y) for line in lines for x, y in line]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    margin = 0.05 * (y_hi - y_lo)  # keep lines off the frame
    y_lo, y_hi = y_lo - margin, y_hi + margin

    def at(x, y):
        y = math.log10(y) if log else y
        px = left + (x - x_lo) / (x_hi - x_lo) * (right - left)
        return px, bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    for frac in (0.0, 0.5, 1.0):
        value = y_lo + frac * (y_hi - y_lo)
        y = bottom - frac * (bottom - top)
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((x0 + 4, y - 6), f"{10 ** value:.3g}" if log else f"{value:.2f}", fill="black", font=font)
        x = left + frac * (right - left)
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - 12, bottom + 6), f"{round(x_lo + frac * (x_hi - x_lo))}", fill="black", font=font)
    for i, line in enumerate(lines):
        color = "black" if i == 0 else (160, 160, 160)
        coords = [at(x, y) for x, y in line]
        if len(coords) == 1:
            cx, cy = coords[0]
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=color)
        else:
            draw.line(coords, fill=color, width=2 if i == 0 else 1)
