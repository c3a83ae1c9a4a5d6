"""Running a model on frame batches: uint8/uint16 frames in and out, one precision, tiling, out-of-memory and
non-finite recovery, and resampling the output to another size.

A recurrent model (``model.recurrent``, see `vsr.models.recurrent`) is run frame by frame in the order the frames
come, within a batch and across calls, with its state kept per tile; batches of such a model are over tiles, not
over time. Callers say when the next frames do not follow the last ones with :meth:`Upscaler.reset_state`.

Knows tensors, not videos or files: `vsr.pipeline` (enhance, images), `vsr.evaluate` (and so `vsr.train`) and
`vsr.bench` all run models through :class:`Upscaler`, so a precision scored in ``vsr eval`` is the one ``vsr enhance``
runs.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError
from vsr.models import fast
from vsr.models.recurrent import RecurrentState
from vsr.precision import Precision

# A tile's (top, left, bottom, right) in LR pixels.
Window = tuple[int, int, int, int]

# Largest code value of each frame dtype: uint8 RGB from 8-bit video, uint16 RGB48 from 10/12-bit video.
PEAK = {torch.uint8: 255, torch.uint16: 65535}


class Upscaler:
    """Runs a model on uint8 or uint16 frame batches on one device in one precision, with tiling and recovery.

    Frames passed in successive calls are taken as consecutive frames of one video (what a recurrent model needs to
    carry its state); :meth:`reset_state` starts afresh.

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
        self._source = model  # the caller's: never changed, never moved; copies are made from it
        self.recurrent = bool(getattr(model, "recurrent", False))
        # A recurrent model's state, one entry per group of equal-sized tiles (the whole frame is one such group),
        # keyed by the group's tile windows: a different tiling starts afresh.
        self.states: dict[tuple, RecurrentState] = {}
        self._set_precision(precision)

    def _set_precision(self, precision: Precision) -> None:
        if precision.name != "fp32" and not any(True for _ in self._source.parameters()):
            precision = Precision("fp32", "no weights to run in reduced precision")  # bicubic: nothing to gain
        self.precision = precision
        # Weights are cast once rather than autocast per call: no per-layer casts, and uint8 -> dtype directly.
        self.dtype = precision.dtype
        self.model = self.graph = None  # the copy in the old precision goes before the new one is made
        self.model = inference_copy(self._source, self.device, self.dtype)
        # What runs: on CPU the SRResNet family as its faster inference graph (same weights, vsr.models.fast).
        self.graph = self.model
        if fast.supports(self.model, self.device):
            try:
                self.graph = fast.fast_graph(self._source, self.dtype)
            except fast.FastGraphUnavailable as exc:
                note = f"fast CPU graph unavailable ({exc}); running the plain module"
                if note not in self.notes:  # said once, not again at an fp32 redo
                    self.notes.append(note)
        self.states = {key: state.to(self.dtype) for key, state in self.states.items()}

    def reset_state(self) -> None:
        """Forgets what a recurrent model carried from earlier frames: the next frames do not follow the last ones."""
        self.states = {}

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
    def launch(self, frames: torch.Tensor,
               check_stream: torch.cuda.Stream | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Starts upscaling ``frames`` without waiting for the device.

        Args:
            frames: (N, H, W, 3) uint8 or uint16 frames on the device.
            check_stream: a CUDA stream to run the finiteness check on, once the output is made, so that it
                overlaps the next batch's model calls instead of queueing before them (the caller copies the output
                to the host on the same stream). None: the current stream.

        Returns:
            The output frames and, in fp16/bf16, a 0-dim bool tensor on the device that is False where some output
            value was not finite (None in fp32). Read it once the output is used; if False, the output is not
            valid and `redo_in_fp32` on the same frames gives the right one. Reading it at once would make the
            host wait for the device after every batch.
        """
        if frames.dtype not in PEAK:
            raise VsrError(f"frames must be uint8 or uint16, got {frames.dtype}")
        before = dict(self.states)
        y = self._forward_resilient(self._to_input(frames))
        finite = None
        if self.dtype != torch.float32 and self.recurrent:
            # The next batch starts from this one's state: a bad batch must be redone now, from the state it
            # started from, not after later batches have used it (a host sync per batch, recurrent models only).
            if not bool(torch.isfinite(y).all()):
                self.states = before
                return self.redo_in_fp32(frames), None
        elif self.dtype != torch.float32:
            if check_stream is None:
                finite = torch.isfinite(y).all()
            else:
                check_stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(check_stream):
                    finite = torch.isfinite(y).all()
                y.record_stream(check_stream)  # y's memory is not reused before the check has read it
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
        # Scaled in fp32: bf16 holds only 8 significant bits, so y * 255 rounded in bf16 and then to an integer is
        # rounded twice (a level off from 64 up); fp16 cannot hold 65535. The resize computes in fp32 anyway.
        y = y.float()
        if self.out_size is not None:
            y = resize_frames(y, *self.out_size)
        y = y.clamp_(0, 1).mul_(PEAK[dtype]).round_().to(dtype)
        return y.permute(0, 2, 3, 1).contiguous()

    def _forward_resilient(self, x: torch.Tensor) -> torch.Tensor:
        """Forward with out-of-memory recovery: halve the batch, then tile, then smaller tiles. Never drops a frame."""
        before = dict(self.states)
        while True:
            self.states = dict(before)  # a retried batch starts from the state its first attempt started from
            batch = min(self.max_batch or x.shape[0], x.shape[0])
            try:
                with cuda_math(self.device):
                    outs = [self._forward(x[i : i + batch], self.tile) for i in range(0, x.shape[0], batch)]
                return torch.cat(outs) if len(outs) > 1 else outs[0]
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
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
        if self.recurrent:
            return torch.cat([self._forward_recurrent(x[i : i + 1], tile) for i in range(x.shape[0])])
        if tile <= 0 or (x.shape[2] <= tile and x.shape[3] <= tile):
            return self.graph(x)
        return self._forward_tiled(x, tile)

    def _tile_windows(self, h: int, w: int, tile: int) -> list[tuple[Window, Window]]:
        """(core, padded) windows (top, left, bottom, right) in LR pixels; one window when the frame fits a tile."""
        if tile <= 0 or (h <= tile and w <= tile):
            return [((0, 0, h, w), (0, 0, h, w))]
        pad, windows = self.tile_pad, []
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                windows.append(((top, left, bottom, right),
                                (max(top - pad, 0), max(left - pad, 0), min(bottom + pad, h), min(right + pad, w))))
        return windows

    def _paste(self, out: torch.Tensor, y: torch.Tensor, core: Window, padded: Window) -> None:
        """Writes the unpadded core of a tile's output into ``out``, so seams vanish."""
        s = self.scale
        (top, left, bottom, right), (t0, l0, _, _) = core, padded
        out[:, :, top * s : bottom * s, left * s : right * s] = y[
            :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
        ]

    def _forward_tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """Tiles with `tile_pad` overlap; each output tile keeps only its unpadded core."""
        n, c, h, w = x.shape
        out = x.new_empty((n, c, h * self.scale, w * self.scale)).contiguous(memory_format=torch.channels_last)
        for core, (t0, l0, t1, l1) in self._tile_windows(h, w, tile):
            self._paste(out, self.graph(x[:, :, t0:t1, l0:l1]), core, (t0, l0, t1, l1))
        return out

    def _forward_recurrent(self, frame: torch.Tensor, tile: int) -> torch.Tensor:
        """One frame of a recurrent model: its tiles batched by size, each tile with its own state."""
        _, c, h, w = frame.shape
        out = frame.new_empty((1, c, h * self.scale, w * self.scale)).contiguous(memory_format=torch.channels_last)
        groups: dict[tuple[int, int], list] = {}
        for core, padded in self._tile_windows(h, w, tile):
            groups.setdefault((padded[2] - padded[0], padded[3] - padded[1]), []).append((core, padded))
        for windows in groups.values():
            key = tuple(padded for _, padded in windows)
            lq = torch.cat([frame[:, :, t0:t1, l0:l1] for _, (t0, l0, t1, l1) in windows])
            lq = lq.contiguous(memory_format=torch.channels_last)
            y, self.states[key] = self.graph.step(lq, self.states.get(key))
            for i, (core, padded) in enumerate(windows):
                self._paste(out, y[i : i + 1], core, padded)
        return out


def inference_copy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A copy of ``model`` on ``device`` with its floating-point weights in ``dtype``, channels_last, in eval mode.

    ``model`` itself is not changed (not moved, cast, reformatted or put in eval mode). Each weight is moved and cast
    straight into the copy, so the device never holds a second full-precision copy next to the one that runs; a
    weight already on ``device`` in that dtype and layout is shared with ``model``, not duplicated.
    """
    memo: dict[int, torch.Tensor] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) in memo:
            continue
        moved = tensor.detach().to(device, dtype if tensor.is_floating_point() else tensor.dtype)
        if moved.dim() == 4:
            moved = moved.contiguous(memory_format=torch.channels_last)
        # Filled in before the copy is made: deepcopy takes these instead of copying the originals.
        memo[id(tensor)] = nn.Parameter(moved, requires_grad=False) if isinstance(tensor, nn.Parameter) else moved
    return copy.deepcopy(model, memo).eval()


@contextlib.contextmanager
def cuda_math(device: torch.device) -> Iterator[None]:
    """vsr's CUDA math settings for the calls inside, restored afterwards (the caller's process keeps its own).

    cuDNN autotuning on (a run calls the model on one shape over and over), and fp32 convolutions and matmuls in
    true fp32, not TF32 (cuDNN's default on Ampere and later): fp32 is what ``--precision fp32`` and the fp32 redo
    of a non-finite batch promise. No-op off CUDA. The settings are read when a kernel is chosen, at launch, so
    they hold for the work launched inside even though it runs later.
    """
    if device.type != "cuda":
        yield
        return
    backends = torch.backends
    conv, matmul = getattr(backends.cudnn, "conv", None), backends.cuda.matmul
    new_api = hasattr(conv, "fp32_precision")  # torch >= 2.9; mixing it with allow_tf32 is an error there
    saved = (backends.cudnn.benchmark, conv.fp32_precision if new_api else backends.cudnn.allow_tf32,
             matmul.fp32_precision if new_api else matmul.allow_tf32)
    backends.cudnn.benchmark = True
    if new_api:
        conv.fp32_precision = matmul.fp32_precision = "ieee"
    else:
        backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        backends.cudnn.benchmark = saved[0]
        if new_api:
            conv.fp32_precision, matmul.fp32_precision = saved[1], saved[2]
        else:
            backends.cudnn.allow_tf32, matmul.allow_tf32 = saved[1], saved[2]


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory (which the runner recovers from), not another error."""
    # CUDA raises torch.OutOfMemoryError; the CPU allocator raises a plain RuntimeError with this wording.
    return isinstance(exc, torch.OutOfMemoryError) or "not enough memory" in str(exc) or "can't allocate" in str(exc)


def resize_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resamples (N, C, H, W) float frames to (N, C, height, width) with antialiased bicubic, on their device.

    How any output size other than the model's factor is made (``--outscale``, ``--width`` / ``--height``, square
    pixels): the model's float output resampled once, before it is rounded to 8 or 16 bits, so there is one rounding
    instead of two (Real-ESRGAN's ``--outscale`` does the same with OpenCV's area/cubic resize). torch's bicubic
    because it runs on the device on the batch; antialiased because it may shrink.
    Computed in fp32 (the reduced-precision kernels of ``interpolate`` are missing on some CPUs and round twice)
    and returned in the input's dtype. Values may overshoot [0, 1] a little, as bicubic does; the caller clamps.
    Frames already of that size are returned as they are.
    """
    if frames.shape[-2:] == (height, width):
        return frames
    out = F.interpolate(frames.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.to(frames.dtype)
