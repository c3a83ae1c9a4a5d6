"""The pre-flight memory estimate: turns "frames too big for this machine" into one line (or a smaller batch or
tiles) before any work starts, instead of an out-of-memory error hours in.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from vsr.errors import VsrError

# LR tile sides suggested by the pre-flight check, largest first.
_TILE_SIDES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 16)
MEMORY_LIMIT_ENV = "VSR_MEMORY_LIMIT"


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB', '1000000' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise VsrError(f"cannot read memory size {text!r}; write e.g. 512M or 8G")
    return int(float(match[1]) * 1024 ** " kmgt".index(match[2] or " "))


def format_size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit in ("B", "KiB") else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def available_memory(device: torch.device, limit: int | None = None) -> tuple[int | None, str]:
    """Bytes the run may use on ``device`` and where that figure comes from; (None, ...) when unknown.

    ``limit`` (or the ``VSR_MEMORY_LIMIT`` environment variable, e.g. ``512M``) overrides the measurement: it is how
    tests simulate a small machine, and how a user keeps vsr from using all of a shared one.
    """
    if limit is not None:
        return limit, "the configured memory limit"
    if os.environ.get(MEMORY_LIMIT_ENV):
        return parse_size(os.environ[MEMORY_LIMIT_ENV]), f"{MEMORY_LIMIT_ENV}"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Memory torch has cached but not handed out is reusable by this run.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached, f"free on {device}"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available RAM"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def activation_width(model: nn.Module) -> float:
    """The widest intermediate tensor of ``model``, in values per LR input pixel (e.g. 1024 for SRResNet x4).

    Measured with forward hooks on a 32x32 probe, so it holds for any architecture without knowing it; a graph
    that knows its own (``model.activation_width``, e.g. `vsr.models.fast`'s, whose widest tensors run in bands)
    says it.
    """
    if isinstance(getattr(model, "activation_width", None), (int, float)):
        return float(model.activation_width)
    sizes: list[int] = []

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())] or [model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    param = next(model.parameters(), None)
    probe = torch.rand(1, 3, 32, 32, device=param.device if param is not None else "cpu")
    try:
        with torch.inference_mode():
            sizes.append(model(probe.to(param.dtype) if param is not None else probe).numel())
    finally:
        for handle in handles:
            handle.remove()
    return max(sizes) / (32 * 32)


def estimate_batch_bytes(
    width: float, frames: int, height: int, cols: int, scale: int, tile: int, tile_pad: int, value_bytes: int,
    sample_bytes: int = 1, queued_batches: int = 0,
) -> int:
    """Peak bytes one model call on a batch needs, plus the frame batches queued around it.

    The model's peak is about three of its widest tensors (a conv's input and output and a skip connection; measured
    2 to 2.6 on SRResNet, ESPCN, FSRCNN, SRCNN); tiled, only one tile's worth is alive, but the whole batch's float
    input and output stay. ``queued_batches`` adds that many LR + SR frame batches of ``sample_bytes`` per value
    (the decode and encode queues, which live in host memory).
    """
    pixels = frames * height * cols
    if tile and (height > tile or cols > tile):
        side_h, side_w = min(tile + 2 * tile_pad, height), min(tile + 2 * tile_pad, cols)
        model_pixels = frames * side_h * side_w
    else:
        model_pixels = pixels
    model_peak = 3 * width * model_pixels * value_bytes
    float_frames = pixels * 3 * (1 + scale * scale) * value_bytes
    queued = queued_batches * pixels * 3 * (1 + scale * scale) * sample_bytes
    return int(model_peak + float_frames + queued)


def fit_memory(
    model: nn.Module, *, height: int, width: int, batch: int, tile: int, tile_pad: int, device: torch.device,
    value_bytes: int, sample_bytes: int = 1, queued_batches: int = 0, limit: int | None = None,
) -> tuple[int, int, str | None]:
    """The batch size and tile side to run with: those asked for if they fit in memory, else the largest that do.

    An estimate: it aims to catch frames that are many times too big (720p at x4 on a small machine, 8K anywhere)
    before hours of setup, not to predict the last megabyte; the out-of-memory recovery handles the rest on CUDA.
    Smaller tiles at the same batch are tried first (tiles cost little: each is padded by ``tile_pad``), then
    batch 1 whole, then batch 1 tiled.

    Returns:
        (batch, tile, note): the note says what was changed and why, None when nothing was.

    Raises:
        VsrError: not even one frame in 16-pixel tiles fits (RAM on CPU, free VRAM on CUDA).
    """
    available, source = available_memory(device, limit)
    if available is None:
        return batch, tile, None
    # On CUDA the queues live in host RAM, which is plentiful next to VRAM: only the model's side is checked there.
    queued = queued_batches if device.type == "cpu" else 0
    scale = int(model.scale)
    act = activation_width(model)

    def need(n: int, t: int) -> int:
        return estimate_batch_bytes(act, n, height, width, scale, t, tile_pad, value_bytes, sample_bytes, queued)

    needed = need(batch, tile)
    if needed <= available:
        return batch, tile, None
    what = f"--tile {tile}" if tile else "whole frames"
    head = (f"frames of {width}x{height} at x{scale} need about {format_size(needed)} per batch of {batch} "
            f"({what}), more than the {format_size(available)} of {source}")
    # A tile side is only worth trying where tile + padding is smaller than the frame.
    sides = [t for t in _TILE_SIDES if t + 2 * tile_pad < max(width, height) and (not tile or t < tile)]
    options = [(batch, side) for side in sides]
    if batch > 1:
        options += [(1, tile)] + [(1, side) for side in sides]
    for n, side in options:
        if need(n, side) <= available:
            chosen = f"{'tiles of ' + str(side) if side else 'whole frames'}, batch {n}"
            return n, side, f"{head}: running {chosen} (about {format_size(need(n, side))}; set --tile/--batch-size to choose)"
    elsewhere = "more memory" if device.type == "cpu" else "more memory or --device cpu"
    raise VsrError(f"{head}, even with --tile 16 --batch-size 1; this needs a machine with {elsewhere}")
