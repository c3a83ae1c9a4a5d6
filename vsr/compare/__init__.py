"""`vsr compare`: every model on the same short excerpt of a video, through the normal pipeline, and what a person
needs to choose between them: ``grid.png`` (the same frame from each, with zoomed crops of the most detailed
regions), ``side_by_side.mp4`` (two of them split or wiped, playable anywhere) and ``index.html`` (a wipe slider
between any two, zoom on click, and each model's time per frame here and estimated time for the whole input).

- `run.py`: the runs (`enhance_video` on the excerpt, the chosen frame kept on its way to the encoder).
- `draw.py`: labels and the choice of detailed regions; `grid.py`: grid.png; `side.py`: side_by_side.mp4;
  `page.py`: index.html.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vsr import data, provenance, video
from vsr.atomic import atomic_write
from vsr.compare.draw import detailed_regions
from vsr.compare.grid import crop_side, make_grid
from vsr.compare.page import PageModel, write_page
from vsr.compare.run import ModelRun, run_models
from vsr.compare.side import write_side_by_side
from vsr.errors import VsrError
from vsr.pipeline.estimate import format_duration
from vsr.pipeline import EnhanceConfig
from vsr.precision import resolve_device

DEFAULT_DURATION = 2.0  # seconds of excerpt


@dataclass
class CompareResult:
    """What `compare` wrote."""

    folder: Path
    grid: Path
    side_by_side: Path
    page: Path
    runs: list[ModelRun]
    crops: list[tuple[int, int, int, int]]  # in output pixels
    pair: tuple[str, str]
    warnings: list[str]


def unique_labels(names: list[str]) -> list[str]:
    """Names made unique (``srgan``, ``srgan-2``) and safe as file names."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"
        seen[safe] = seen.get(safe, 0) + 1
        out.append(safe if seen[safe] == 1 else f"{safe}-{seen[safe]}")
    return out


def compare(input_path: str | os.PathLike, folder: str | os.PathLike, models: list[nn.Module], cfg: EnhanceConfig,
            at: float, duration: float = DEFAULT_DURATION, crops: list[tuple[int, int, int, int]] | None = None,
            pair: tuple[str, str] | None = None, wipe: bool = False, overwrite: bool = False,
            report: Callable[[str], None] | None = None) -> CompareResult:
    """Runs ``models`` on ``duration`` seconds of ``input_path`` from ``at`` and writes the comparison folder.

    Args:
        input_path: the video.
        folder: the folder to write (made whole in a temporary folder beside it and renamed at the end).
        models: loaded models (`vsr.load_model`); bicubic is added first if none of them is bicubic.
        cfg: enhance options (device, precision, batch, ...); start and end are set from ``at`` and ``duration``.
        at: the excerpt's start, seconds.
        duration: the excerpt's length, seconds.
        crops: ``(x, y, w, h)`` regions in input pixels to zoom on (1..3); None: the most detailed ones.
        pair: the two labels for the side-by-side video (left, right); None: bicubic and the first other model.
        wipe: sweep the split line across the video instead of a fixed split at the middle.
        overwrite: replace an existing folder.
        report: called with a line per finished model.

    Raises:
        VsrError: a bad input, excerpt, crop or pair, or any failure of a run (nothing is left at ``folder``).
    """
    input_path, folder = Path(input_path), Path(folder)
    if input_path.suffix.lower() in video.IMAGE_EXTS:
        raise VsrError(f"{input_path} is an image; vsr compare takes a video")
    info = video.probe(input_path)
    if duration <= 0:
        raise VsrError(f"--duration must be positive, got {duration:g}")
    if info.duration is not None and at >= info.duration:
        raise VsrError(f"--at {at:g} s is past the end of {input_path.name} ({info.duration:.2f} s)")
    if folder.exists() and not (folder.is_dir() and (overwrite or not any(folder.iterdir()))):
        raise VsrError(f"output folder exists and is not empty: {folder} (use --overwrite to replace it)")
    if crops is not None and not 1 <= len(crops) <= 3:
        raise VsrError(f"give one to three --crop regions, got {len(crops)}")
    for x, y, w, h in crops or ():
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > info.width or y + h > info.height:
            raise VsrError(f"--crop {x},{y},{w},{h} is not inside the {info.width}x{info.height} input")
    scales = {int(m.scale) for m in models}
    if len(scales) > 1:
        raise VsrError(f"every model must have the same scale, got x{', x'.join(str(s) for s in sorted(scales))}")
    if not any(getattr(m, "arch", None) == "bicubic" for m in models):
        from vsr.models import load_model

        models = [load_model("bicubic", scale=scales.pop() if scales else 4)] + list(models)
    labels = unique_labels([str(getattr(m, "name", None) or getattr(m, "arch", "model")) for m in models])
    pair = pair or (labels[0], labels[1] if len(labels) > 1 else labels[0])
    for name in pair:
        if name not in labels:
            raise VsrError(f"--pair names {name!r}, not one of the models: {', '.join(labels)}")
    end = at + duration if info.duration is None else min(at + duration, info.duration)
    run_cfg = dataclasses.replace(cfg, start=at, end=end)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f".{folder.name}.partial-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        result = _write(input_path, work, list(zip(labels, models)), run_cfg, info, crops, pair, wipe, report)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{secrets.token_hex(4)}"
            folder.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dataclasses.replace(result, folder=folder, grid=folder / result.grid.name,
                               side_by_side=folder / result.side_by_side.name, page=folder / result.page.name,
                               runs=[dataclasses.replace(r, output=folder / r.output.relative_to(work))
                                     for r in result.runs])


def _write(input_path, work: Path, models, cfg: EnhanceConfig, info: video.VideoInfo, crops, pair, wipe,
           report) -> CompareResult:
    runs = run_models(input_path, work / "outputs", models, cfg, report)
    height, width = runs[0].frame.shape[:2]
    factor_x, factor_y = width / info.width, height / info.height
    if crops is None:
        boxes = detailed_regions(runs[0].frame, crop_side(width, height))
    else:
        boxes = [(round(x * factor_x), round(y * factor_y), round(w * factor_x), round(h * factor_y))
                 for x, y, w, h in crops]
    when = f"{cfg.start:.2f} s" if cfg.start else "0 s"
    title = f"{input_path.name} at {when}, x{runs[0].tags['scale']}: the same frame from each model"
    with atomic_write(work / "grid.png") as temp:
        make_grid([(r.label, r.frame) for r in runs], boxes, title).save(temp, format="PNG")
    (work / "frames").mkdir()
    for run in runs:
        with atomic_write(work / "frames" / f"{run.label}.png") as temp:
            data.write_image(temp, data.Picture(run.frame), tags=run.tags)
    by_label = {r.label: r for r in runs}
    left, right = by_label[pair[0]], by_label[pair[1]]
    tags = provenance.prefixed({"version": provenance.version(), "model": f"{left.label} | {right.label}"})
    warnings = write_side_by_side(work / "side_by_side.mp4", input_path, left, right, cfg.start, cfg.end, wipe, tags)
    rows = [PageModel(r.label, f"frames/{r.label}.png", r.tags["arch"], r.tags["generative"], r.per_frame,
                      format_duration(r.whole_input) if r.whole_input is not None else "unknown",
                      r.tags["precision"], r.tags["weights_sha256"]) for r in runs]
    mode = "wiped (the line sweeps across and back)" if wipe else "split at the middle"
    with atomic_write(work / "index.html") as temp:
        write_page(temp, input_path.name, f"{when} to {cfg.end:.2f} s, x{runs[0].tags['scale']}, "
                   f"{len(runs)} models, frame {len(runs) and runs[0].frames // 2 + 1} of {runs[0].frames} shown",
                   rows, (width, height), _machine(cfg.device), "grid.png", "side_by_side.mp4",
                   f"{left.label} on the left, {right.label} on the right, {mode}")
    return CompareResult(work, work / "grid.png", work / "side_by_side.mp4", work / "index.html", runs, boxes,
                         (left.label, right.label), warnings)


def _machine(device: str) -> str:
    """'cpu (AMD EPYC 9R14, 2 cores)' or 'cuda:0 (NVIDIA H200)': what the times in the table mean."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"cpu ({name}, {os.cpu_count()} cores)"
