"""What an `enhance` run is told (:class:`EnhanceConfig`) and what it decides before the first frame (:class:`RunPlan`,
made by :func:`plan_run`): sizes, precision, batch and tiles that fit in memory, deinterlacing, and the encoder
settings every writer of the run shares. How much the model gets at once is `vsr.pipeline.worksize`'s choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from vsr import provenance, video
from vsr.errors import VsrError
from vsr.models.runner import Upscaler
from vsr.pipeline.worksize import choose_work_size
from vsr.pipeline.resize import output_size, square_pixel_size
from vsr.precision import Precision, choose_precision, resolve_device


@dataclass
class EnhanceConfig:
    """Everything `enhance` can be told, besides the model and the paths."""

    batch_size: int | None = None  # None: chosen from frame size, model and machine (vsr.pipeline.worksize)
    tile: int | None = None  # LR tile side in pixels; 0 = whole frames; None: chosen with the batch
    tile_pad: int | None = None  # overlap around each tile; None: the model's receptive field
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
    work: str = ""  # batch and tiles and why they were chosen, for the start line


@dataclass(frozen=True)
class RunPlan:
    """Everything a run decided before the first frame: what every stage and every sink works from."""

    input_path: Path
    output_path: Path
    model: nn.Module
    cfg: EnhanceConfig
    info: video.VideoInfo
    device: torch.device
    precision: Precision  # as chosen (the upscaler may later fall back to fp32; its own .precision says so)
    upscaler: Upscaler
    output: OutputPlan
    depth: int  # bits per sample of the frames through the model: 8, or 16 for 10-bit video
    encoding: video.FrameSettings  # how every writer of the run encodes
    rebase: bool  # the output's clock starts at 0 (--start without --keep-timestamps)
    queued: int  # batches in flight between each pair of stages
    notes: list[str]  # what was changed and why (memory fit, pixel format), for the result

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def default_output_path(input_path: str | os.PathLike, scale: float) -> Path:
    """``<stem>_x<scale><ext>`` beside the input (``_x3.5`` for an --outscale of 3.5), in the input's container
    where it can hold the output."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_x{scale:g}{video.default_output_suffix(path)}")


def check_config(cfg: EnhanceConfig) -> None:
    """Refuses option values no run could use, in one line, before anything is opened."""
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise VsrError(f"batch size must be at least 1, got {cfg.batch_size}")
    if (cfg.tile or 0) < 0 or (cfg.tile_pad or 0) < 0:
        raise VsrError(f"tile and tile pad must be >= 0, got {cfg.tile} and {cfg.tile_pad}")
    if cfg.segment_frames is not None and cfg.segment_frames < 1:
        raise VsrError(f"segment frames must be at least 1, got {cfg.segment_frames}")
    for name in ("start", "end"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise VsrError(f"{name} must be >= 0 seconds, got {value}")
    if cfg.start is not None and cfg.end is not None and cfg.end <= cfg.start:
        raise VsrError(f"end ({cfg.end} s) must be after start ({cfg.start} s)")


def plan_run(input_path: Path, output_path: Path | None, model: nn.Module, cfg: EnhanceConfig) -> RunPlan:
    """Probes the input and decides the run: output size and encoder settings, device and precision, the batch and
    tiles that fit in memory, deinterlacing and the output clock.

    Raises:
        VsrError: unreadable input, impossible sizes or settings, frames too large for this machine.
    """
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
    upscaler = Upscaler(model, device, precision, out_size=(out_w, out_h) if resized else None)
    queued = max(1, cfg.queue_batches)
    work, memory_note = choose_work_size(
        upscaler.model, height=info.height, width=info.width, device=device, value_bytes=upscaler.dtype.itemsize,
        sample_bytes=depth // 8, queued_batches=2 * queued + 2, batch=cfg.batch_size, tile=cfg.tile,
        tile_pad=cfg.tile_pad, limit=cfg.memory_limit, graph=upscaler.graph,
    )
    batch_size, upscaler.tile, upscaler.tile_pad = work.batch, work.tile, work.tile_pad
    deinterlace = video.deinterlace_plan(cfg.deinterlace, info.interlaced)
    time_base = video.output_time_base(info.time_base, deinterlace)
    fps = info.fps * 2 if info.fps and deinterlace == "field" else info.fps
    # What made the output, as container tags beside the source's (vsr info reads them back).
    tags = provenance.prefixed(provenance.model_tags(model, upscaler.precision.name))
    encoding = video.FrameSettings(
        width=out_w, height=out_h, time_base=time_base, fps=fps, codec=codec, crf=cfg.crf, preset=cfg.preset,
        pix_fmt=pix_fmt, sample_aspect_ratio=sample_aspect, container=output_path.suffix,
        options=dict(cfg.encoder_options) or None, tags=tags, **info.color_tags)
    return RunPlan(
        input_path=input_path, output_path=output_path, model=model, cfg=cfg, info=info, device=device,
        precision=upscaler.precision, upscaler=upscaler,
        output=OutputPlan(codec, deinterlace, out_w, out_h, batch_size, upscaler.tile, time_base, work.describe()),
        depth=depth, encoding=encoding, rebase=cfg.start is not None and not cfg.keep_timestamps, queued=queued,
        notes=([memory_note] if memory_note else []) + pix_fmt_notes,
    )
