"""enhance_video: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Every batch carries its pts through unchanged; frames and the last pts are counted in and out and compared before
the output is let onto the target path. Written either by one `VideoWriter` (temp + rename) or, with ``resume``, as
segments joined at the end (see `vsr.pipeline.resume`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import video
from vsr.errors import VsrError
from vsr.pipeline.resize import output_size, square_pixel_size
from vsr.pipeline.resume import ResumeState, SegmentSink, input_identity, model_identity, state_dir
from vsr.pipeline.stages import DONE, HostBuffers, get, put, start_thread, yield_cpu_to_model
from vsr.models.runner import Upscaler
from vsr.pipeline.memory import fit_memory
from vsr.precision import Precision, choose_precision, resolve_device

_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}


@dataclass
class EnhanceConfig:
    """Everything `enhance` can be told, besides the model and the paths."""

    batch_size: int = 4  # lowered (and tiles used) where the pre-flight estimate says it does not fit
    tile: int = 0  # 0 = whole frames; else LR tile side in pixels
    tile_pad: int = 16
    device: str = "auto"
    precision: str = "auto"
    codec: str | None = None  # None: the output container's default (video.default_codec)
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None  # None: video.output_pix_fmt decides (keeps the input's bit depth where it can)
    overwrite: bool = False
    start: float | None = None
    end: float | None = None
    copy_audio: bool = True
    copy_subtitles: bool = True
    resume: bool = False  # write segments into a state folder beside the output, reusing finished ones
    segment_frames: int | None = None  # frames per segment with resume; None: about 10 s (300 if the rate is unknown)
    outscale: float | None = None  # output factor >= 1 instead of the model's (resampled after it, on the device)
    width: int | None = None  # output width; alone, the height keeps the aspect ratio
    height: int | None = None  # output height; alone, the width keeps the aspect ratio
    encoder_options: dict[str, str] = field(default_factory=dict)  # passed to the encoder (-e KEY=VALUE)
    quality: int = 95  # JPEG / WebP quality of image outputs (100: lossless WebP)
    memory_limit: int | None = None  # bytes for the pre-flight check; None: measure (or $VSR_MEMORY_LIMIT)
    queue_batches: int = 4  # batches in flight between each pair of stages; bounds memory
    deinterlace: str = "auto"  # video.DEINTERLACE_MODES: auto deinterlaces interlaced sources at their frame rate
    keep_timestamps: bool = False  # with start: keep the source's clock instead of starting the output at 0
    square_pixels: bool = False  # resample anamorphic input to square pixels (same display aspect) after the model


@dataclass(frozen=True)
class OutputPlan:
    """What a run decided before the first frame, for the start line: encoder, deinterlacing, batch and tile."""

    codec: str
    deinterlace: str | None  # "frame", "field" or None
    width: int
    height: int
    batch_size: int
    tile: int
    time_base: Fraction


@dataclass
class EnhanceResult:
    """What a run did, for the CLI to report. A returned result has passed the in == out check."""

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
    last_pts_in: int | None = None
    last_pts_out: int | None = None
    time_base: Fraction | None = None
    bit_depth: int = 8  # of the frames that went through the model (16 for 10-bit input)
    reused_frames: int = 0  # frames taken from the segments of an earlier --resume run

    @property
    def fps(self) -> float:
        done = self.frames_out - self.reused_frames
        return done / self.seconds if self.seconds > 0 else 0.0

    @property
    def verified(self) -> bool:
        return self.frames_in == self.frames_out and self.last_pts_in == self.last_pts_out

    @property
    def last_time(self) -> float | None:
        """The last frame's pts in seconds."""
        if self.last_pts_out is None or self.time_base is None:
            return None
        return float(self.last_pts_out * self.time_base)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM via the CLI) stopped a run; ``detail`` says what was kept, for the one-line message."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class _TargetSink:
    """Writes every frame with one `VideoWriter` onto the target (temp + rename); checks in == out before the rename."""

    reused = 0
    done_last_pts = None
    finished = False

    def __init__(self, writer: video.VideoWriter):
        self.writer = writer
        self.warnings = writer.warnings

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        self.writer.write(frames, pts)

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        frames_out, last_pts_out = self.writer.frames_written, self.writer.last_pts
        if frames_out != frames_in or last_pts_out != last_pts_in:
            raise VsrError(f"decoded {frames_in} frames ending at pts {last_pts_in} but wrote {frames_out} ending at "
                           f"{last_pts_out}; output discarded")
        self.writer.close()
        return frames_out, last_pts_out

    def abort(self) -> None:
        self.writer.abort()

    def describe(self) -> str:
        return "no output was written"



def default_output_path(input_path: str | os.PathLike, scale: float) -> Path:
    """``<stem>_x<scale><ext>`` beside the input (``_x3.5`` for an --outscale of 3.5), in the input's container
    where it can hold the output."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_x{scale:g}{video.default_output_suffix(path)}")


def _check_config(cfg: EnhanceConfig) -> None:
    if cfg.batch_size < 1:
        raise VsrError(f"batch size must be at least 1, got {cfg.batch_size}")
    if cfg.tile < 0 or cfg.tile_pad < 0:
        raise VsrError(f"tile and tile pad must be >= 0, got {cfg.tile} and {cfg.tile_pad}")
    if cfg.segment_frames is not None and cfg.segment_frames < 1:
        raise VsrError(f"segment frames must be at least 1, got {cfg.segment_frames}")
    for name in ("start", "end"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise VsrError(f"{name} must be >= 0 seconds, got {value}")
    if cfg.start is not None and cfg.end is not None and cfg.end <= cfg.start:
        raise VsrError(f"end ({cfg.end} s) must be after start ({cfg.start} s)")


def enhance_video(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[video.VideoInfo, Precision, torch.device, OutputPlan], None] | None = None,
    sink_factory: Callable[..., object] | None = None,
) -> EnhanceResult:
    """Upscales every frame of a video and writes it with the original pts and the source's other streams.

    Args:
        input_path: the video to read.
        output_path: where to write (default `<stem>_x<scale><ext>` beside the input). Only ever appears complete:
            written to a temporary file (or, with ``cfg.resume``, to segments) and renamed at the end.
        model: a loaded vsr model (see `vsr.load_model`).
        cfg: options.
        progress: called with the number of frames just written (once at the start with the frames an earlier
            ``--resume`` run finished).
        on_start: called once with the probe, the chosen precision and device, and the :class:`OutputPlan`
            (the CLI prints them).
        sink_factory: called like `resume_parts` to make the sink frames go to instead of the target or the
            resume segments (`vsr.pipeline.distributed` writes a window of segments). A sink's ``done_last_pts``
            and ``frame_limit`` make the decoder start after that pts and stop after that many frames.

    Returns:
        What was done. Raises VsrError on any failure and `Interrupted` on Ctrl-C, leaving nothing at the target.
    """
    cfg = cfg or EnhanceConfig()
    _check_config(cfg)
    input_path = Path(input_path)
    info = video.probe(input_path)
    scale = int(model.scale)
    output_path = Path(output_path) if output_path else default_output_path(input_path, cfg.outscale or scale)
    codec = cfg.codec or video.default_codec(output_path)
    device = resolve_device(cfg.device)
    pix_fmt_notes: list[str] = []
    pix_fmt = video.output_pix_fmt(info, codec, cfg.pix_fmt, pix_fmt_notes)
    # 10-bit in and 10-bit out: decode to uint16 RGB so the model sees (and returns) every level.
    depth = 16 if info.bit_depth > 8 and pix_fmt and video.pix_fmt_bits(pix_fmt) > 8 else 8
    precision = choose_precision(cfg.precision, device, getattr(model, "meta", None))
    if depth == 16 and precision.name == "bf16" and cfg.precision == "auto":
        precision = Precision("fp32", "fp32: bf16's 8-bit mantissa would round 10-bit video to 8 bits")
    out_w, out_h = output_size(info.width, info.height, scale, cfg.outscale, cfg.width, cfg.height)
    sample_aspect = info.sample_aspect_ratio
    if cfg.square_pixels and sample_aspect:
        # Same display aspect with square pixels: the axis the pixels are long in gets more of them.
        out_w, out_h = square_pixel_size(out_w, out_h, sample_aspect)
        sample_aspect = None
    resized = (out_w, out_h) != (info.width * scale, info.height * scale)
    upscaler = Upscaler(model, device, precision, cfg.tile, cfg.tile_pad, (out_w, out_h) if resized else None)
    precision = upscaler.precision
    queued = max(1, cfg.queue_batches)
    batch_size, upscaler.tile, memory_note = fit_memory(
        upscaler.model, height=info.height, width=info.width, batch=cfg.batch_size, tile=cfg.tile,
        tile_pad=cfg.tile_pad, device=device, value_bytes=upscaler.dtype.itemsize, sample_bytes=depth // 8,
        queued_batches=2 * queued + 2, limit=cfg.memory_limit,
    )
    deinterlace = video.deinterlace_plan(cfg.deinterlace, info.interlaced)
    time_base = video.output_time_base(info.time_base, deinterlace)
    fps = info.fps * 2 if info.fps and deinterlace == "field" else info.fps
    plan = OutputPlan(codec, deinterlace, out_w, out_h, batch_size, upscaler.tile, time_base)
    frame_args = video.FrameSettings(
        width=out_w, height=out_h, time_base=time_base, fps=fps, codec=codec, crf=cfg.crf, preset=cfg.preset,
        pix_fmt=pix_fmt, sample_aspect_ratio=sample_aspect, container=output_path.suffix,
        options=dict(cfg.encoder_options) or None, **info.color_tags)
    rebase = cfg.start is not None and not cfg.keep_timestamps
    if sink_factory is not None:
        sink = sink_factory(input_path, output_path, model, cfg, info, upscaler, plan, depth, frame_args, rebase)
    elif cfg.resume:
        sink = _segment_sink(input_path, output_path, model, cfg, info, upscaler, plan, depth, frame_args, rebase)
    else:
        if state_dir(output_path).is_dir():
            warnings.warn(f"{state_dir(output_path)} holds an earlier --resume run's work; pass --resume to use it")
        sink = _TargetSink(video.VideoWriter(
            output_path, source=str(input_path), overwrite=cfg.overwrite, start=cfg.start, end=cfg.end,
            rotation=info.rotation, copy_audio=cfg.copy_audio, copy_subtitles=cfg.copy_subtitles, rebase=rebase,
            **frame_args.as_kwargs(),
        ))

    cuda = device.type == "cuda"
    decoded: queue.Queue = queue.Queue(maxsize=queued)
    upscaled: queue.Queue = queue.Queue(maxsize=queued)
    stop = threading.Event()
    counts = {"in": 0, "out": 0, "last_pts": None}
    started = time.perf_counter()
    skip_until = sink.done_last_pts
    frame_limit = getattr(sink, "frame_limit", None)
    read_start = cfg.start
    if skip_until is not None:
        # Seek near the first unfinished frame; frames up to the last finished pts are dropped exactly, by pts.
        origin = info.start_time or 0
        read_start = max(cfg.start or 0.0, float(skip_until * time_base - origin * info.time_base))

    def decode():
        if not cuda:  # the model keeps every core; FFmpeg's decoder threads, started below, inherit this priority
            yield_cpu_to_model()
        if sink.finished:  # every frame was done by an earlier run: only the join is left
            put(decoded, DONE, stop)
            return
        batches = video.read_frames(input_path, batch_size, start=read_start, end=cfg.end, depth=depth,
                                    deinterlace=cfg.deinterlace, info=info, alloc=pinned_array if cuda else None)
        try:
            for batch in batches:
                if skip_until is not None and batch.pts[0] <= skip_until:
                    keep = [i for i, p in enumerate(batch.pts) if p > skip_until]
                    if not keep:
                        continue
                    batch = video.FrameBatch(np.ascontiguousarray(batch.frames[keep[0] :]), batch.pts[keep[0] :],
                                             batch.time_base)
                if frame_limit is not None and counts["in"] + len(batch.pts) >= frame_limit:
                    take = frame_limit - counts["in"]
                    batch = video.FrameBatch(batch.frames[:take], batch.pts[:take], batch.time_base)
                    counts["in"] += take
                    counts["last_pts"] = batch.pts[-1]
                    put(decoded, batch, stop)
                    break
                counts["in"] += len(batch.pts)
                counts["last_pts"] = batch.pts[-1]
                if not put(decoded, batch, stop):
                    return
            put(decoded, DONE, stop)
        finally:
            batches.close()  # closes the input now, also when stopped early

    frame_dtype = torch.uint16 if depth == 16 else torch.uint8

    def pinned_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        # CUDA: decoded frames are written once, into pinned memory the H2D copy reads asynchronously.
        return torch.empty(shape, dtype=_TORCH_DTYPES[np.dtype(dtype)], pin_memory=True).numpy()

    model_lock = threading.Lock()  # the encode thread redoes a non-finite batch with the same Upscaler

    def redo_in_fp32(held: torch.Tensor) -> np.ndarray:
        with model_lock, torch.cuda.device(device):
            return upscaler.redo_in_fp32(held).cpu().numpy()
    out_shape = (batch_size, out_h, out_w, 3)
    out_buffers = HostBuffers(queued + 2, out_shape, frame_dtype, pinned=True) if cuda else None

    def encode():
        if not cuda:  # x264's threads start at the first write, in this thread, and inherit its priority
            yield_cpu_to_model()
        while True:
            item = get(upscaled, stop)
            if item is DONE or stop.is_set():
                return
            frames, pts, ready, buf, finite, held = item
            if ready is not None:
                ready.synchronize()  # the D2H copy into this pinned buffer (and of the finiteness flag) has landed
            if finite is not None and not finite.item():
                frames = redo_in_fp32(held)  # the batch's input frames were kept on the device for this
            sink.write(frames, pts)
            counts["out"] += len(pts)
            if buf is not None:
                out_buffers.give(buf)
            if progress:
                progress(len(pts))

    decoder = encoder = None
    decode_errors: list[BaseException] = []
    encode_errors: list[BaseException] = []
    copy_stream = torch.cuda.Stream(device) if cuda else None
    staged_batches: deque = deque()  # pinned host batches whose H2D copy may still be reading them
    try:
        if on_start:
            on_start(info, precision, device, plan)
        if progress and sink.reused:
            progress(sink.reused)
        decoder, decode_errors = start_thread(decode, stop)
        encoder, encode_errors = start_thread(encode, stop)
        while True:
            batch = get(decoded, stop)
            if decode_errors or encode_errors or batch is DONE:
                break
            frames = torch.from_numpy(batch.frames)
            if cuda:
                # Pinned (decoded straight into it) so the H2D copy is asynchronous, on a side stream so it overlaps
                # compute; the host batch is kept until its copy has landed.
                staged = frames if frames.is_pinned() else frames.pin_memory()
                with torch.cuda.stream(copy_stream):
                    frames = staged.to(device, non_blocking=True)
                    copied = torch.cuda.Event()
                    copied.record(copy_stream)
                staged_batches.append((copied, staged))
                while staged_batches and staged_batches[0][0].query():
                    staged_batches.popleft()
                torch.cuda.current_stream(device).wait_stream(copy_stream)
                frames.record_stream(torch.cuda.current_stream(device))
                with model_lock:
                    sr, finite = upscaler.launch(frames)
                n = sr.shape[0]
                buf = out_buffers.take()
                host = buf[:n]
                host.copy_(sr, non_blocking=True)
                finite_host = None
                if finite is not None:
                    # Read by the encode thread after `ready`: no host sync per batch here.
                    finite_host = torch.empty((), dtype=torch.bool, pin_memory=True)
                    finite_host.copy_(finite, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(torch.cuda.current_stream(device))  # the stream of --device cuda:N, not of GPU 0
                item = (host.numpy(), batch.pts, ready, buf, finite_host, frames if finite is not None else None)
            else:
                item = (upscaler(frames).numpy(), batch.pts, None, None, None, None)
            if not put(upscaled, item, stop):
                break
        if decode_errors:
            raise decode_errors[0]
        put(upscaled, DONE, stop)
        encoder.join()
        if encode_errors:
            raise encode_errors[0]
        frames_in = sink.reused + counts["in"]
        last_pts_in = counts["last_pts"] if counts["last_pts"] is not None else sink.done_last_pts
        if frames_in == 0:
            raise VsrError(f"no frames decoded from {input_path} in the chosen range")
        frames_out, last_pts_out = sink.finish(frames_in, last_pts_in, output_path, cfg.overwrite)
    except BaseException as exc:
        # Threads first: the encode thread may be inside the writer, which must not be closed under it.
        stop.set()
        for thread, wait in ((encoder, 60), (decoder, 10)):
            if thread is not None:
                thread.join(timeout=wait)
        if encoder is None or not encoder.is_alive():
            sink.abort()
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            raise Interrupted(sink.describe()) from None
        raise
    finally:
        stop.set()
    notes = ([memory_note] if memory_note else []) + pix_fmt_notes
    notes += [w for w in sink.warnings if w not in pix_fmt_notes]
    if sink.reused:
        notes.append(f"resumed: {sink.reused} frames ({sink.reused_segments} segments) reused from an earlier run")
    return EnhanceResult(
        output=str(output_path),
        frames_in=frames_in,
        frames_out=frames_out,
        seconds=time.perf_counter() - started,
        device=str(device),
        precision=upscaler.precision.name,
        precision_reason=precision.reason,
        width=out_w,
        height=out_h,
        notes=notes + upscaler.notes,
        last_pts_in=last_pts_in,
        last_pts_out=last_pts_out,
        time_base=time_base,
        bit_depth=depth,
        reused_frames=sink.reused,
    )


def _segment_sink(input_path: Path, target: Path, model: nn.Module, cfg: EnhanceConfig, info: video.VideoInfo,
                  upscaler: Upscaler, plan: OutputPlan, depth: int, frame_args: video.FrameSettings,
                  rebase: bool) -> SegmentSink:
    """The resume state for ``target`` (found or new) and a sink writing segments into it."""
    video.check_output_path(target, input_path, cfg.overwrite)  # now, not after hours of work
    parts = resume_parts(input_path, target, model, cfg, info, upscaler, plan, depth, frame_args, rebase)
    state = ResumeState(target, parts.identity, video.segment_suffix(target))
    return SegmentSink(state, parts.segment_frames, parts.open_writer, parts.join)


@dataclass
class ResumeParts:
    """What segmenting a run takes: the state's identity, the segment size, a segment writer and the join."""

    identity: dict
    segment_frames: int
    open_writer: Callable[[Path], video.VideoWriter]
    join: Callable[[list[Path], Path], video.JoinResult]


def resume_parts(input_path: Path, target: Path, model: nn.Module, cfg: EnhanceConfig, info: video.VideoInfo,
                 upscaler: Upscaler, plan: OutputPlan, depth: int, frame_args: video.FrameSettings,
                 rebase: bool) -> ResumeParts:
    """The identity, segment size, segment writer and join of a segmented run with these settings."""
    # Everything that changes the segments' pixels or pts; audio/subtitle choices only matter at the join.
    settings = {
        "width": frame_args.width, "height": frame_args.height, "time_base": str(frame_args.time_base),
        "codec": frame_args.codec, "crf": cfg.crf, "preset": cfg.preset, "pix_fmt": frame_args.pix_fmt,
        "depth": depth, "precision": upscaler.precision.name, "tile": plan.tile, "tile_pad": cfg.tile_pad,
        "start": cfg.start, "end": cfg.end, "deinterlace": plan.deinterlace,
        "encoder_options": dict(sorted(cfg.encoder_options.items())),
    }
    identity = {"input": input_identity(input_path), "model": model_identity(model), "settings": settings}
    fps = frame_args.fps
    segment_frames = cfg.segment_frames or (max(1, round(10 * fps)) if fps else 300)

    def open_writer(path: Path) -> video.VideoWriter:
        return video.VideoWriter(path, source=None, overwrite=True, **frame_args.as_kwargs())

    def join_into(segments: list[Path], output: Path):
        return video.join_segments(
            segments, output, source=str(input_path), time_base=frame_args.time_base, copy_audio=cfg.copy_audio,
            copy_subtitles=cfg.copy_subtitles, start=cfg.start, end=cfg.end, overwrite=True, rotation=info.rotation,
            fps=fps, rebase=rebase, **info.color_tags,
        )

    return ResumeParts(identity, segment_frames, open_writer, join_into)
