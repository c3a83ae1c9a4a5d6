"""The footage benchmark's output: its Markdown tables and its picture grid (see footage_benchmark.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vsr import metrics

SCALE = 4


def mean_present(values: list) -> float | None:
    """The mean of the values that are not None (a one-frame run has no temporal error); None if none are."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_tables(scores: dict, chains: list[str], recorder: list[str]) -> str:
    """For one set: rows models, columns chains; cells Y-PSNR / SSIM / tErr, best PSNR and tErr of each chain in bold,
    then the means over the ``recorder`` chains. Then the secondary flicker figure, one cell per chain."""
    best_psnr = {c: max(scores[m][c]["psnr"] for m in scores) for c in chains}
    best_terr = {c: min((scores[m][c]["terr"] for m in scores if scores[m][c]["terr"] is not None), default=None)
                 for c in chains}
    means = " | mean PSNR (recorders) | mean tErr (recorders)" if recorder else ""
    lines = ["| model | " + " | ".join(chains) + means + " |", "|---" * (len(chains) + 1 + 2 * bool(recorder)) + "|"]
    for name, per_chain in scores.items():
        cells = []
        for c in chains:
            s = per_chain[c]
            psnr = f"**{s['psnr']:.2f}**" if s["psnr"] == best_psnr[c] else f"{s['psnr']:.2f}"
            terr = _fmt(s["terr"], 2)
            cells.append(f"{psnr} / {s['ssim']:.3f} / {f'**{terr}**' if s['terr'] == best_terr[c] else terr}")
        if recorder:
            cells += [_fmt(mean_present([per_chain[c]["psnr"] for c in recorder]), 2),
                      _fmt(mean_present([per_chain[c]["terr"] for c in recorder]), 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Secondary: flicker, mean |(sr_t - sr_t-1) - (hr_t - hr_t-1)| on Y (grey levels):", "",
              "| model | " + " | ".join(chains) + " |", "|---" * (len(chains) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(per_chain[c]["flicker"], 2) for c in chains) + " |"
              for name, per_chain in scores.items()]
    return "\n".join(lines)


def report(result: dict, device: str) -> str:
    """The whole Markdown report: a header, one table pair per set, the chains' legend."""
    sets = {"held-out": "held out (never trained on)", "in-scene": "in-scene (training clips)", "given": "given"}
    starts = ", ".join(f"{clip} from frame {start}" for clip, start in result["start"].items())
    parts = [f"Footage benchmark: {result['frames']} consecutive frames per clip ({starts}; after "
             f"{max(result['lead_in'].values())} lead-in frames for recurrent models), {result['crop'][0]}x"
             f"{result['crop'][1]} crops where the clip moves most, seed {result['seed']}, {device}; cells: Y-PSNR dB "
             f"/ SSIM / tErr (RMS of d_sr - d_hr on Y, grey levels, lower is better)"]
    for set_name, clips in result["sets"].items():
        parts.append(f"### {sets.get(set_name, set_name)}: {', '.join(clips)}\n\n"
                     + markdown_tables(result["scores"][set_name], list(result["chains"]), result["recorder_chains"]))
    parts.append("\n".join(f"- `{c}`: {d}" for c, d in result["chains"].items()))
    return "\n\n".join(parts) + "\n"


def picture_grid(result: dict, path: Path, side: int = 160) -> None:
    """One row per clip: LR (nearest) | each model | original, a centred ``side`` crop, labelled with crop PSNR."""
    grid = result["grid"]
    rows = []
    for clip, hr in grid["hr"].items():
        names = list(grid["sr"][clip])  # the models run this time (an earlier run's rows have no pictures)
        h, w = hr.shape[:2]
        s = min(side, h, w)
        top, left = (h - s) // 2, (w - s) // 2

        def cut(img: np.ndarray) -> np.ndarray:
            return img[top : top + s, left : left + s]

        lr_up = np.repeat(np.repeat(grid["lr"][clip], SCALE, 0), SCALE, 1)
        tiles = [(cut(lr_up), "LR (nearest)")]
        for name in names:
            sr = grid["sr"][clip][name]
            tiles.append((cut(sr), f"{name} {metrics.psnr_ssim_y(cut(sr), cut(hr), SCALE)[0]:.2f}"))
        tiles.append((cut(hr), "original"))
        rows.append(tiles)
    if not rows:
        return  # the grid chain was not run
    label_h, s = 14, rows[0][0][0].shape[0]
    canvas = Image.new("RGB", (s * len(rows[0]), (s + label_h) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, tiles in enumerate(rows):
        for c, (img, label) in enumerate(tiles):
            canvas.paste(Image.fromarray(img), (c * s, r * (s + label_h) + label_h))
            draw.text((c * s + 2, r * (s + label_h) + 1), label[: s // 6], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
