"""Running a model on frame batches: dtype conversion, tiling, out-of-memory and non-finite recovery, and the
pre-flight memory estimate that turns "frames too big for this machine" into one line before any work starts.
"""

from __future__ import annotations

import copy
import os
import re
import warnings

import torch
from torch import nn

from vsr.errors import VsrError
from vsr.models import fast
from vsr.pipeline.resize import resize_frames
from vsr.precision import Precision

# Largest code value of each frame dtype: uint8 RGB from 8-bit video, uint16 RGB48 from 10/12-bit video.
PEAK = {torch.uint8: 255, torch.uint16: 65535}
# LR tile sides suggested by the pre-flight check, largest first.
_TILE_SIDES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 16)
MEMORY_LIMIT_ENV = "VSR_MEMORY_LIMIT"


class Upscaler:
    """Runs a model on uint8 or uint16 frame batches on one device in one precision, with tiling and recovery.

    Out-of-memory is recovered by halving the batch, then tiling, then halving the tile; the reduced setting is
    kept for the following batches, so the warning comes once rather than every batch. A non-finite output in
    fp16/bf16 redoes the batch in fp32 and stays in fp32. No frame is ever skipped.

    Args:
        model: any vsr model (tensors in [0,1], NCHW, output `model.scale` times larger).
        device: where to run.
        precision: from `choose_precision`.
        tile: LR tile side (0 = whole frame).
        tile_pad: overlap each tile gets on every side, in LR pixels.
        out_size: (width, height) to resample the model's output to (see `resize_frames`); None keeps
            the model's scale.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision, tile: int = 0, tile_pad: int = 16,
                 out_size: tuple[int, int] | None = None):
        self.device = device
        self.out_size = out_size
        self.scale = int(model.scale)
        self.tile = tile
        self.tile_pad = tile_pad
        self.max_batch = 0  # 0 = no limit yet; set by out-of-memory recovery
        self.notes: list[str] = []
        self._fp32_model = model
        self._set_precision(precision)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        else:
            fast.keep_freed_memory()

    def _set_precision(self, precision: Precision) -> None:
        if precision.name != "fp32" and not any(True for _ in self._fp32_model.parameters()):
            precision = Precision("fp32", "no weights to run in reduced precision")  # bicubic: nothing to gain
        self.precision = precision
        # Weights are cast once rather than autocast per call: no per-layer casts, and uint8 -> dtype directly.
        self.dtype = precision.dtype
        self.model = self._fp32_model.to(self.device)
        if self.dtype != torch.float32:
            self.model = copy.deepcopy(self._fp32_model).to(self.device, self.dtype)
        self.model = self.model.to(memory_format=torch.channels_last).eval()
        # What runs: on CPU the SRResNet family as its faster inference graph (same weights, vsr.models.fast).
        self.graph = self.model
        if fast.supports(self.model, self.device):
            self.graph = fast.fast_graph(self._fp32_model, self.dtype)

    def _to_input(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2)
        if frames.dtype == torch.uint8:
            x = x.to(self.dtype).div_(255)  # every uint8 value is exact in fp16/bf16
        else:
            # 65535 overflows fp16 (max 65504): normalise in fp32 first.
            x = x.to(torch.float32).div_(PEAK[frames.dtype]).to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscales (N,H,W,3) uint8/uint16 frames on the device into (N,H*s,W*s,3) frames of the same dtype
        (or ``out_size``)."""
        out, finite = self.launch(frames)
        if finite is not None and not finite:  # a host sync; the CUDA pipeline reads the flag later (see launch)
            out = self.redo_in_fp32(frames)
        return out

    @torch.inference_mode()
    def launch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Starts upscaling ``frames`` without waiting for the device.

        Returns:
            The output frames and, in fp16/bf16, a 0-dim bool tensor on the device that is False where some output
            value was not finite (None in fp32). Read it once the output is used; if False, the output is not
            valid and `redo_in_fp32` on the same frames gives the right one. Reading it at once would make the
            host wait for the device after every batch.
        """
        if frames.dtype not in PEAK:
            raise VsrError(f"frames must be uint8 or uint16, got {frames.dtype}")
        y = self._forward_resilient(self._to_input(frames))
        finite = torch.isfinite(y).all() if self.dtype != torch.float32 else None
        return self._to_frames(y, frames.dtype), finite

    @torch.inference_mode()
    def redo_in_fp32(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscales ``frames`` in fp32 after a non-finite output, and runs every later batch in fp32 too."""
        if self.dtype != torch.float32:
            # fp16/bf16 overflowed on this content: redo from the frames, not from the rounded input.
            warnings.warn(f"non-finite output in {self.precision.name}; redoing in fp32 and continuing in fp32")
            self.notes.append(f"switched from {self.precision.name} to fp32 after a non-finite batch")
            self._set_precision(Precision("fp32", "fallback after non-finite output"))
        return self._to_frames(self._forward_resilient(self._to_input(frames)), frames.dtype)

    def _to_frames(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.out_size is not None:
            y = resize_frames(y, *self.out_size)
        if dtype != torch.uint8:
            y = y.float()  # fp16 cannot hold 65535
        y = y.clamp_(0, 1).mul_(PEAK[dtype]).round_().to(dtype)
        return y.permute(0, 2, 3, 1).contiguous()

    def _forward_resilient(self, x: torch.Tensor) -> torch.Tensor:
        """Forward with out-of-memory recovery: halve the batch, then tile, then smaller tiles. Never drops a frame."""
        while True:
            batch = min(self.max_batch or x.shape[0], x.shape[0])
            try:
                outs = [self._forward(x[i : i + batch], self.tile) for i in range(0, x.shape[0], batch)]
                return torch.cat(outs) if len(outs) > 1 else outs[0]
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    raise
            # Recover outside the except block: its traceback holds the failed call's tensors until it ends.
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if batch > 1:
                self.max_batch = batch // 2
                note = f"out of memory: retrying with batch {self.max_batch}"
            else:
                side = max(x.shape[2], x.shape[3])
                tile = min(self.tile or side, side) // 2
                if tile < 16:
                    raise VsrError("out of memory even with 16-pixel tiles and batch 1; try --device cpu")
                self.tile = tile
                note = f"out of memory: retrying with tiles of {tile} px"
            self.notes.append(note)
            warnings.warn(note)

    def _forward(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        if tile <= 0 or (x.shape[2] <= tile and x.shape[3] <= tile):
            return self.graph(x)
        return self._forward_tiled(x, tile)

    def _forward_tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """Tiles with `tile_pad` overlap; each output tile keeps only its unpadded core, so seams vanish."""
        n, c, h, w = x.shape
        s, pad = self.scale, self.tile_pad
        out = x.new_empty((n, c, h * s, w * s)).contiguous(memory_format=torch.channels_last)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - pad, 0), max(left - pad, 0)
                t1, l1 = min(bottom + pad, h), min(right + pad, w)
                y = self.graph(x[:, :, t0:t1, l0:l1])
                out[:, :, top * s : bottom * s, left * s : right * s] = y[
                    :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        return out


def _is_out_of_memory(exc: BaseException) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator raises a plain RuntimeError with this wording.
    return isinstance(exc, torch.OutOfMemoryError) or "not enough memory" in str(exc) or "can't allocate" in str(exc)


# ---------------------------------------------------------------------------------------------------------------
# Pre-flight memory estimate


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB', '1000000' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise VsrError(f"cannot read memory size {text!r}; write e.g. 512M or 8G")
    return int(float(match[1]) * 1024 ** " kmgt".index(match[2] or " "))


def _format_size(nbytes: float) -> str:
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

    Measured with forward hooks on a 32x32 probe, so it holds for any architecture without knowing it.
    """
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
    head = (f"frames of {width}x{height} at x{scale} need about {_format_size(needed)} per batch of {batch} "
            f"({what}), more than the {_format_size(available)} of {source}")
    # A tile side is only worth trying where tile + padding is smaller than the frame.
    sides = [t for t in _TILE_SIDES if t + 2 * tile_pad < max(width, height) and (not tile or t < tile)]
    options = [(batch, side) for side in sides]
    if batch > 1:
        options += [(1, tile)] + [(1, side) for side in sides]
    for n, side in options:
        if need(n, side) <= available:
            chosen = f"{'tiles of ' + str(side) if side else 'whole frames'}, batch {n}"
            return n, side, f"{head}: running {chosen} (about {_format_size(need(n, side))}; set --tile/--batch-size to choose)"
    elsewhere = "more memory" if device.type == "cpu" else "more memory or --device cpu"
    raise VsrError(f"{head}, even with --tile 16 --batch-size 1; this needs a machine with {elsewhere}")
