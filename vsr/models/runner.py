"""Running a model on frame batches: uint8/uint16 frames in and out, one precision, tiling, out-of-memory and
non-finite recovery, and resampling the output to another size.

Knows tensors, not videos or files: `vsr.pipeline` (enhance, images), `vsr.evaluate` (and so `vsr.train`) and
`vsr.bench` all run models through :class:`Upscaler`, so a precision scored in ``vsr eval`` is the one ``vsr enhance``
runs.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import VsrError
from vsr.models import fast
from vsr.precision import Precision

# Largest code value of each frame dtype: uint8 RGB from 8-bit video, uint16 RGB48 from 10/12-bit video.
PEAK = {torch.uint8: 255, torch.uint16: 65535}


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

    def reset_state(self) -> None:
        """Forgets what a recurrent model carried from earlier frames: the next frames do not follow the last ones."""

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
