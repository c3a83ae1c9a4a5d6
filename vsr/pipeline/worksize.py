"""How much a run gives the model at once: a batch of frames, one frame, or one frame in tiles, chosen from the frame
size, the model and the machine (:func:`choose_work_size`), within the memory the pre-flight check allows.

Measured on 2 vCPUs of an AMD EPYC with AVX512-BF16 (no AMX), SRResNet x4 in bf16, one thread: the fast graph runs
at 13-14 us per LR pixel from 128x128 to 720x576 whole frames and at 16 us at 64x64, so a call wants some tens of
thousands of pixels (several frames of 160x120) and gains nothing from more. Tiles cost their overlap: each tile
recomputes the model's receptive field (40 LR pixels each side for SRResNet) around its core, 10-60 % more work at
DVD sizes. Keeping a layer's activations in the last-level cache by tiling did not pay there (the per-pixel rate is
flat from tiles of 128x128, whose 64-channel activations fit in the 32 MiB L3, to whole 720x576 frames, which do
not), so frames are tiled only to bound memory: a batch never needs more than :data:`WORK_MEMORY` (or the
pre-flight's limit, if lower), whatever the frame size, and among the tilings that fit the one with the least
recomputed overlap wins. A whole 1080p frame at x2 needs about 3.9 GB for the model alone; 720x576 at x4 about 3 GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vsr.models import Bicubic
from vsr.pipeline.memory import activation_width, available_memory, estimate_batch_bytes, fit_memory, format_size

# On CPU the estimated peak of one model call plus the frames queued around it is kept under this, so that a run's RSS
# (this, the ~0.6 GB of the imported libraries and the encoder's own buffers) stays under 4 GB at any frame size.
WORK_MEMORY = 2 * 2**30
# LR pixels per call below which frames are batched: smaller calls leave the matrix units and threads underfed.
# CUDA wants far larger calls than a CPU to fill its many cores.
TARGET_PIXELS = {"cpu": 80_000, "cuda": 2_000_000}
MAX_BATCH = 16
# Tile overlap when the receptive field cannot be read from the model (the runner's long-standing default).
DEFAULT_TILE_PAD = 16

# Leaf modules that mix no neighbouring pixels (a conv's reach is counted from its kernel).
_POINTWISE = (
    nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d,
    nn.PixelShuffle, nn.PixelUnshuffle,
)
# Interpolation (bicubic: 2 pixels each side of its input grid): a module of its own, or inside a module's forward
# where hooks cannot see it, so every model gets that much margin.
_INTERPOLATING = (Bicubic, nn.Upsample)
_FUNCTIONAL_MARGIN = 2


@dataclass(frozen=True)
class WorkSize:
    """What one model call gets: ``batch`` frames, whole (``tile`` 0) or in LR tiles of ``tile`` with ``tile_pad``
    overlap; ``why`` says how it was chosen (for the start line)."""

    batch: int
    tile: int
    tile_pad: int
    why: str

    def describe(self) -> str:
        what = f"batch {self.batch}" + (f", tiles of {self.tile} + {self.tile_pad} overlap" if self.tile else "")
        return f"{what} ({self.why})" if self.why else what


def receptive_field(model: nn.Module) -> tuple[int, int] | None:
    """How far an output pixel reaches into the input, in LR pixels each side, and the grid tiles must align to
    (the model's total downsampling); None when the model has layers whose reach cannot be read from them.

    Read with forward hooks on a 32x32 probe: every conv's (or pooling's) kernel reach on the grid it runs on,
    summed as if all ran in sequence (an upper bound for parallel branches), plus a small margin for interpolation
    done inside a forward. Tiles padded by this much compute what the whole frame does, to float rounding.
    """
    probe_side = 32
    reach = 0.0
    align = 1
    unknown: list[str] = []

    def hook(module, inputs, output):
        nonlocal reach, align
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if x is None or x.dim() != 4 or not isinstance(output, torch.Tensor):
            return
        grid = x.shape[-1] / probe_side  # this layer's input pixels per LR pixel
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, d = (_pair(getattr(module, name, 1)) for name in ("kernel_size", "stride", "dilation"))
            if isinstance(module, nn.ConvTranspose2d):
                # An output pixel reads ~k/s input pixels; +1 for where the stride's phase puts them.
                own = max(math.ceil((k - 1) * d / 2 / s) + 1 for k, s, d in zip(k, s, d))
            else:
                own = max((k - 1) * d / 2 + (s - 1) for k, s, d in zip(k, s, d))
            reach += own / grid
            out_grid = output.shape[-1] / probe_side
            if out_grid < 1:
                align = max(align, round(1 / out_grid))
        elif isinstance(module, _INTERPOLATING):
            reach += _FUNCTIONAL_MARGIN / grid
        elif not isinstance(module, _POINTWISE):
            unknown.append(type(module).__name__)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())] or [model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    param = next(model.parameters(), None)
    probe = torch.rand(1, 3, probe_side, probe_side)
    if param is not None:
        probe = probe.to(param.device, param.dtype)
    try:
        with torch.inference_mode():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    if unknown:
        return None
    pad = math.ceil(reach) + _FUNCTIONAL_MARGIN
    return -(-pad // align) * align, align


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def computed_pixels(height: int, width: int, tile: int, pad: int) -> int:
    """LR pixels the runner computes for one frame in tiles of ``tile`` with ``pad`` overlap (0: whole frame)."""
    if not tile or (height <= tile and width <= tile):
        return height * width

    def span(size: int) -> int:
        return sum(min(start + tile + pad, size) - max(start - pad, 0) for start in range(0, size, tile))

    return span(height) * span(width)


def frames_per_call(width: int, height: int, device: torch.device) -> int:
    """How many whole frames of this size a call gets before memory is looked at (the choice may lower it)."""
    target = TARGET_PIXELS.get(device.type, TARGET_PIXELS["cpu"])
    return max(1, min(MAX_BATCH, target // (width * height)))


def choose_work_size(
    model: nn.Module, *, height: int, width: int, device: torch.device, value_bytes: int, sample_bytes: int = 1,
    queued_batches: int = 0, batch: int | None = None, tile: int | None = None, tile_pad: int | None = None,
    limit: int | None = None, graph: nn.Module | None = None,
) -> tuple[WorkSize, str | None]:
    """The batch and tiles to run ``model`` with on frames of ``width`` x ``height`` on ``device``.

    ``batch``, ``tile`` and ``tile_pad`` are the user's (None: choose). Chosen: whole frames, batched up to
    :data:`TARGET_PIXELS` LR pixels a call; where one whole frame needs more than the work budget (the lesser of
    :data:`WORK_MEMORY` and the memory the pre-flight allows), the tile side with the least recomputed overlap
    among those that fit, padded by the model's receptive field so the tiles compute what the whole frame does.
    What the user set is kept if it fits and otherwise reduced by the pre-flight check (:func:`fit_memory`), as
    before. ``graph`` is what runs in place of ``model`` where that differs (`Upscaler.graph`): its memory counts.

    Returns:
        (work size, note): the note says what the pre-flight check changed, None when nothing was.

    Raises:
        VsrError: not even one frame in 16-pixel tiles fits.
    """
    field = receptive_field(model)
    pad = tile_pad if tile_pad is not None else field[0] if field else DEFAULT_TILE_PAD
    if tile_pad is None and field and getattr(model, "recurrent", False):
        # A recurrent model's state is kept per tile and reaches one field further into the tile each frame: twice
        # the field kept a tiny rsrresnet's tiles equal to whole frames over 4 frames (once: 1 level off by the 4th).
        pad *= 2
    align = field[1] if field else 1
    target = TARGET_PIXELS.get(device.type, TARGET_PIXELS["cpu"])
    runs = graph if graph is not None else model

    def fit(n: int, t: int, why: str) -> tuple[WorkSize, str | None]:
        n, t, note = fit_memory(runs, height=height, width=width, batch=n, tile=t, tile_pad=pad, device=device,
                                value_bytes=value_bytes, sample_bytes=sample_bytes, queued_batches=queued_batches,
                                limit=limit)
        return WorkSize(n, t, pad, why if note is None else "reduced to fit in memory"), note

    if tile:  # tiles asked for: batched like frames of the padded tile's size
        side = min(tile + 2 * pad, height) * min(tile + 2 * pad, width)
        return fit(batch or max(1, min(MAX_BATCH, target // side)), tile, "tiles as asked")
    available, source = available_memory(device, limit)
    # On CPU the activations are the process's RSS, kept under the work budget; on CUDA they live in the device's
    # memory, and what is free there is the bound.
    if available is not None and (available < WORK_MEMORY or device.type != "cpu"):
        budget, source = available, f"of {source}"
    else:
        budget, source = WORK_MEMORY, "work budget"
    queued = queued_batches if device.type == "cpu" else 0
    act = activation_width(runs)

    def need(n: int, t: int) -> int:
        return estimate_batch_bytes(act, n, height, width, int(model.scale), t, pad, value_bytes, sample_bytes,
                                    queued)

    if batch is None:
        n = frames_per_call(width, height, device)
        while n > 1 and need(n, 0) > budget:
            n -= 1
        why = f"{n} frames of {width}x{height} a call" if n > 1 else "one whole frame a call"
    else:
        n, why = batch, "batch as asked"
    if need(n, 0) <= budget or tile == 0:
        return fit(n, 0, why if tile is None else "whole frames as asked")
    best = _least_overlap_tile(height, width, pad, align, lambda t: need(n, t) <= budget)
    if best is None:
        # Nothing fits the work budget: the pre-flight check picks the largest that fits the memory there is.
        return fit(n, 0, "as large as memory allows")
    overlap = computed_pixels(height, width, best, pad) / (height * width) - 1
    why = (f"a whole frame needs about {format_size(need(n, 0))}, more than the {format_size(budget)} {source}; "
           f"{100 * overlap:.0f} % recomputed overlap")
    return fit(n, best, why)


def _least_overlap_tile(height: int, width: int, pad: int, align: int, fits) -> int | None:
    """The tile side (a multiple of ``align``) that fits and recomputes the fewest pixels; ties go to the larger."""
    step = math.lcm(8, align)
    sides = set(range(step * -(-16 // step), max(height, width), step))
    for parts in range(2, max(height, width) // 16 + 2):  # sides that split an axis evenly
        sides.update(-(-math.ceil(size / parts) // align) * align for size in (height, width))
    sides = {side for side in sides if side >= 16}
    fitting = [side for side in sides if fits(side)]
    if not fitting:
        return None
    return min(fitting, key=lambda side: (computed_pixels(height, width, side, pad), -side))
