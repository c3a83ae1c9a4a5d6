"""The enhance pipeline: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Knows tensors and threads, not codecs: frames arrive from `vsr.video` as uint8 RGB batches with their pts, and leave
the same way. Every batch carries its pts through unchanged, and frames are counted in and out.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import video
from vsr.errors import VsrError
from vsr.precision import Precision, choose_precision, resolve_device

_DONE = object()  # end-of-stream marker on the queues


@dataclass
class EnhanceConfig:
    """Everything `enhance` can be told, besides the model and the paths."""

    batch_size: int = 4
    tile: int = 0  # 0 = whole frames; else LR tile side in pixels
    tile_pad: int = 16
    device: str = "auto"
    precision: str = "auto"
    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    overwrite: bool = False
    start: float | None = None
    end: float | None = None
    copy_audio: bool = True
    queue_batches: int = 4  # batches in flight between each pair of stages; bounds memory


@dataclass
class EnhanceResult:
    """What a run did, for the CLI to report."""

    output: str
    frames_in: int
    frames_out: int
    seconds: float
    device: str
    precision: str
    precision_reason: str
    width: int
    height: int
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0


class Upscaler:
    """Runs a model on uint8 frame batches on one device in one precision, with tiling and recovery.

    Args:
        model: any vsr model (tensors in [0,1], NCHW, output `model.scale` times larger).
        device: where to run.
        precision: from `choose_precision`.
        tile: LR tile side (0 = whole frame); tile_pad: overlap each tile gets on every side.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision, tile: int = 0, tile_pad: int = 16):
        self.device = device
        self.scale = int(model.scale)
        self.tile = tile
        self.tile_pad = tile_pad
        self.notes: list[str] = []
        self._fp32_model = model
        self._set_precision(precision)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _set_precision(self, precision: Precision) -> None:
        self.precision = precision
        has_params = any(True for _ in self._fp32_model.parameters())
        # Weights are cast once rather than autocast per call: no per-layer casts, and uint8 -> dtype directly.
        self.dtype = precision.dtype if has_params else torch.float32
        self.model = self._fp32_model.to(self.device)
        if self.dtype != torch.float32:
            import copy

            self.model = copy.deepcopy(self._fp32_model).to(self.device, self.dtype)
        self.model = self.model.to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscales (N,H,W,3) uint8 frames on the device into (N,H*s,W*s,3) uint8 frames on the device."""
        x = frames.permute(0, 3, 1, 2).to(self.dtype).div_(255).contiguous(memory_format=torch.channels_last)
        y = self._forward_resilient(x)
        if not torch.isfinite(y).all() and self.dtype != torch.float32:
            # fp16/bf16 overflowed on this content: redo the batch in fp32 and stay there.
            warnings.warn(f"non-finite output in {self.precision.name}; redoing in fp32 and continuing in fp32")
            self.notes.append(f"switched from {self.precision.name} to fp32 after a non-finite batch")
            self._set_precision(Precision("fp32", "fallback after non-finite output"))
            y = self._forward_resilient(x.float())
        return y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def _forward_resilient(self, x: torch.Tensor) -> torch.Tensor:
        """Forward with out-of-memory recovery: halve the batch, then tile, then smaller tiles. Never drops a frame."""
        batch, tile = x.shape[0], self.tile
        while True:
            try:
                outs = [self._forward(x[i : i + batch], tile) for i in range(0, x.shape[0], batch)]
                return torch.cat(outs) if len(outs) > 1 else outs[0]
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if batch > 1:
                    batch = batch // 2
                    note = f"out of memory: retrying with batch {batch}"
                else:
                    side = max(x.shape[2], x.shape[3])
                    tile = (tile or side) // 2
                    if tile < 16:
                        raise VsrError("out of memory even with 16-pixel tiles; try --device cpu") from None
                    note = f"out of memory: retrying with tiles of {tile} px"
                self.notes.append(note)
                warnings.warn(note)

    def _forward(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        if tile <= 0 or (x.shape[2] <= tile and x.shape[3] <= tile):
            return self.model(x)
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
                y = self.model(x[:, :, t0:t1, l0:l1])
                out[:, :, top * s : bottom * s, left * s : right * s] = y[
                    :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        return out


def _start_thread(target, *args) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Puts unless the run is being stopped; returns False when it was."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


class _HostBuffers:
    """A ring of pinned host buffers for one frame shape, so H2D/D2H copies can be asynchronous on CUDA."""

    def __init__(self, count: int, shape: tuple[int, ...], pinned: bool):
        self.free: queue.Queue = queue.Queue()
        for _ in range(count):
            self.free.put(torch.empty(shape, dtype=torch.uint8, pin_memory=pinned))

    def take(self) -> torch.Tensor:
        return self.free.get()

    def give(self, buf: torch.Tensor) -> None:
        self.free.put(buf)


def default_output_path(input_path: str | os.PathLike, scale: int) -> Path:
    path = Path(input_path)
    return path.with_name(f"{path.stem}_x{scale}{path.suffix}")


def enhance_video(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[video.VideoInfo, Precision, torch.device], None] | None = None,
) -> EnhanceResult:
    """Upscales every frame of a video and writes it with the original pts and audio.

    Args:
        input_path: the video to read.
        output_path: where to write (default `<stem>_x<scale><ext>` beside the input). Written to a temporary file
            and renamed only when complete.
        model: a loaded vsr model (see `vsr.load_model`).
        cfg: options.
        progress: called with the number of frames just written.
        on_start: called once with the probe, the chosen precision and device (the CLI prints them).

    Returns:
        What was done; raises VsrError on any failure, leaving no output behind.
    """
    cfg = cfg or EnhanceConfig()
    if cfg.batch_size < 1:
        raise VsrError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    info = video.probe(input_path)
    scale = int(model.scale)
    output_path = Path(output_path) if output_path else default_output_path(input_path, scale)
    device = resolve_device(cfg.device)
    precision = choose_precision(cfg.precision, device, getattr(model, "meta", None))
    upscaler = Upscaler(model, device, precision, cfg.tile, cfg.tile_pad)

    out_w, out_h = info.width * scale, info.height * scale
    cuda = device.type == "cuda"
    depth = max(1, cfg.queue_batches)
    decoded: queue.Queue = queue.Queue(maxsize=depth)
    upscaled: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    counts = {"in": 0, "out": 0}
    started = time.perf_counter()

    def decode():
        for batch in video.read_frames(input_path, cfg.batch_size, start=cfg.start, end=cfg.end):
            counts["in"] += len(batch.pts)
            if not _put(decoded, batch, stop):
                return
        _put(decoded, _DONE, stop)

    out_buffers = _HostBuffers(depth + 2, (cfg.batch_size, out_h, out_w, 3), pinned=cuda) if cuda else None

    def encode(writer: video.VideoWriter):
        while True:
            item = _get(upscaled, stop)
            if item is _DONE:
                return
            frames, pts, ready, buf = item
            if ready is not None:
                ready.synchronize()  # the D2H copy into this pinned buffer has landed
            writer.write(frames, pts)
            counts["out"] += len(pts)
            if buf is not None:
                out_buffers.give(buf)
            if progress:
                progress(len(pts))

    decoder, decode_errors, encoder, encode_errors = None, [], None, []
    copy_stream = torch.cuda.Stream(device) if cuda else None
    try:
        with video.VideoWriter(
            output_path,
            width=out_w,
            height=out_h,
            time_base=info.time_base,
            fps=info.fps,
            source=str(input_path),
            codec=cfg.codec,
            crf=cfg.crf,
            preset=cfg.preset,
            pix_fmt=cfg.pix_fmt,
            copy_audio=cfg.copy_audio,
            overwrite=cfg.overwrite,
            start=cfg.start,
            end=cfg.end,
            rotation=info.rotation,
            **info.color_tags,
        ) as writer:
            # The writer has checked the output path by now, so a refused output fails before any work is shown.
            if on_start:
                on_start(info, precision, device)
            decoder, decode_errors = _start_thread(decode)
            encoder, encode_errors = _start_thread(encode, writer)
            while True:
                batch = _get(decoded, stop)
                if decode_errors or encode_errors:
                    break
                if batch is _DONE:
                    break
                frames = torch.from_numpy(batch.frames)
                if cuda:
                    # Pinned staging so the H2D copy is asynchronous, on a side stream so it overlaps compute.
                    staged = frames.pin_memory()
                    with torch.cuda.stream(copy_stream):
                        frames = staged.to(device, non_blocking=True)
                    torch.cuda.current_stream(device).wait_stream(copy_stream)
                    frames.record_stream(torch.cuda.current_stream(device))
                sr = upscaler(frames)
                n = sr.shape[0]
                if cuda:
                    buf = out_buffers.take()
                    host = buf[:n]
                    host.copy_(sr, non_blocking=True)
                    ready = torch.cuda.Event()
                    ready.record()
                    item = (host.numpy(), batch.pts, ready, buf)
                else:
                    item = (sr.numpy(), batch.pts, None, None)
                if not _put(upscaled, item, stop):
                    break
            if decode_errors:
                raise decode_errors[0]
            _put(upscaled, _DONE, stop)
            encoder.join()
            if encode_errors:
                raise encode_errors[0]
            if counts["out"] != counts["in"]:
                raise VsrError(f"frame count mismatch: decoded {counts['in']}, wrote {counts['out']}; output discarded")
            if counts["in"] == 0:
                raise VsrError(f"no frames decoded from {input_path} in the chosen range")
            notes = list(getattr(writer, "warnings", []))
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        if decoder is not None:
            decoder.join(timeout=5)
        if encoder is not None:
            encoder.join(timeout=5)
    for errors in (decode_errors, encode_errors):
        if errors:
            raise errors[0]
    return EnhanceResult(
        output=str(output_path),
        frames_in=counts["in"],
        frames_out=counts["out"],
        seconds=time.perf_counter() - started,
        device=str(device),
        precision=upscaler.precision.name,
        precision_reason=precision.reason,
        width=out_w,
        height=out_h,
        notes=notes + upscaler.notes,
    )


def upscale_image(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
) -> Path:
    """Upscales one image file (PNG/JPEG/...) into another, written atomically."""
    from PIL import Image, UnidentifiedImageError

    cfg = cfg or EnhanceConfig()
    input_path = Path(input_path)
    scale = int(model.scale)
    output_path = Path(output_path) if output_path else default_output_path(input_path, scale)
    if not input_path.is_file():
        raise VsrError(f"no such file: {input_path}")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise VsrError(f"output {output_path} is the input; choose another -o")
    if output_path.exists() and not cfg.overwrite:
        raise VsrError(f"output {output_path} exists; pass --overwrite to replace it")
    try:
        with Image.open(input_path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise VsrError(f"not an image file: {input_path} ({exc})") from None
    device = resolve_device(cfg.device)
    precision = choose_precision(cfg.precision, device, getattr(model, "meta", None))
    upscaler = Upscaler(model, device, precision, cfg.tile, cfg.tile_pad)
    sr = upscaler(torch.from_numpy(rgb.copy())[None].to(device))[0].cpu().numpy()
    tmp = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}{output_path.suffix}")
    try:
        Image.fromarray(sr).save(tmp)
        os.replace(tmp, output_path)
    except OSError as exc:
        raise VsrError(f"cannot write {output_path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return output_path


