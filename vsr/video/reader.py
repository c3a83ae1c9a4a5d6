"""Decoding: :func:`read_frames` turns a video into RGB batches that carry each frame's pts.

Time: ``start``/``end`` are seconds from the first frame of the video stream; pts are the input's display times
(never renumbered; on half the time base for one frame per field).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from vsr.errors import VsrError
from vsr.video.colour import SWS_QUALITY, frame_colour, sws_args
from vsr.video.deinterlace import Deinterlacer, deinterlace_plan, output_time_base
from vsr.video.probe import VideoInfo, decode_frames, error_text, main_video_stream, open_input, probe


@dataclass
class FrameBatch:
    """Consecutive decoded frames: ``frames`` (N,H,W,3) uint8 (or uint16) RGB, ``pts`` in ``time_base``."""

    frames: np.ndarray
    pts: list[int]
    time_base: Fraction | None = None


def read_frames(path, batch_size: int = 8, start: float | None = None, end: float | None = None,
                depth: int = 8, deinterlace: str = "auto", info: VideoInfo | None = None,
                alloc: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None) -> Iterator[FrameBatch]:
    """Decode a video into batches of RGB frames, each frame with its display time as pts.

    Args:
        path: Video file.
        batch_size: Frames per batch (the last batch may be shorter).
        start: First second to keep, counted from the video stream's first frame; None for the beginning.
        end: Keep frames before this second (same clock as ``start``); None for the end.
        depth: 8 for uint8 rgb24 frames, 16 for uint16 rgb48 frames scaled to the full 0..65535 range (keeps
            10-bit input without crushing it; 8-bit input reads as value * 257).
        deinterlace: One of :data:`~vsr.video.deinterlace.DEINTERLACE_MODES` (``auto``: interlaced sources are
            deinterlaced at their frame rate; ``field`` gives one frame per field, on half the time base).
        info: The file's :func:`probe`, if the caller has it (saves probing again).
        alloc: makes each batch's array from (shape, dtype); default ``np.empty``. The CUDA pipeline passes one
            that returns pinned host memory, so each frame is written once, straight where the H2D copy reads it.

    Yields:
        FrameBatch with C-contiguous (N,H,W,3) frames and pts in its ``time_base``: the input video's, or half of
        it for one frame per field. The pts are the frames' display times as FFmpeg's best-effort rule gives them
        (see :func:`~vsr.video.probe.timestamp_source`): the dts where the pts are out of order (AVI with
        B-frames), the previous time plus one frame duration where a frame has none (raw elementary streams),
        and a time that does not increase is bumped to the previous + 1, so the writer can encode it.

    Raises:
        VsrError: bad file (see :func:`probe`), a decode error, or a file that ends before its index says it should.
    """
    path = os.fspath(path)
    if batch_size < 1:
        raise VsrError(f"batch size must be at least 1, got {batch_size}")
    if depth not in (8, 16):
        raise VsrError(f"depth must be 8 or 16, got {depth}")
    info = info or probe(path)
    plan = deinterlace_plan(deinterlace, info.interlaced)
    rgb_format, dtype = ("rgb24", np.uint8) if depth == 8 else ("rgb48le", np.uint16)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1000)
        out_time_base = output_time_base(time_base, plan)
        origin = stream.start_time or 0
        step = max(round(1 / (stream.average_rate * time_base)), 1) if stream.average_rate else 1
        if start:
            # Seek lands on the keyframe before `start`; the frames before it are decoded and dropped below.
            try:
                container.seek(origin + int(start / time_base), stream=stream, backward=True)
            except av.FFmpegError as err:
                raise VsrError(f"cannot seek to {start}s in {path}: {error_text(err)}") from None
        start_pts = (origin + start / time_base) * (time_base / out_time_base) if start else None
        end_pts = (origin + end / time_base) * (time_base / out_time_base) if end is not None else None
        batch, pts, stats = None, [], {"packets": 0, "shown": 0, "decoded": 0}
        timed = _timed(decode_frames(container, stream, path, stats), info.timestamps, origin, step, stats)
        first = next(timed, None)
        if first is not None:
            width, height = first.width, first.height
            color_range, color_space, _, _ = frame_colour(first, stream)
            sws = sws_args(first.format.name, color_space, color_range, width, height)
            convert = dict(format=rgb_format, src_colorspace=sws.get("matrix"), src_color_range=sws.get("range"),
                           interpolation=SWS_QUALITY)
            shown = _one_size(itertools.chain([first], timed), width, height)
            if plan:
                shown = _deinterlaced(shown, time_base, plan, info.interlaced)
            elif deinterlace == "auto":
                shown = _deinterlaced_where_marked(shown, time_base, origin, path)
            for frame in shown:
                if start_pts is not None and frame.pts < start_pts:
                    continue
                if end_pts is not None and frame.pts >= end_pts:
                    break
                if batch is None:  # a fresh array per batch: the consumer may still hold the previous one
                    batch = (alloc or np.empty)((batch_size, height, width, 3), dtype)
                _copy_rgb(frame.reformat(**convert), batch[len(pts)])
                pts.append(frame.pts)
                if len(pts) == batch_size:
                    yield FrameBatch(batch, pts, out_time_base)
                    batch, pts = None, []
        if pts:
            yield FrameBatch(batch[: len(pts)], pts, out_time_base)
        if start is None and end is None:
            _check_complete(container, stream, path, stats["decoded"], stats)


def _timed(frames: Iterator[av.VideoFrame], source: str, origin: int, step: int,
           stats: dict) -> Iterator[av.VideoFrame]:
    """``frames`` with ``pts`` set to their display times: the ``source`` timestamp ("pts" or "dts"), the previous
    time plus ``step`` where a frame has none, bumped to previous + 1 where it does not increase."""
    last = None
    for frame in frames:
        stats["decoded"] += 1
        p = getattr(frame, source)
        if p is None:
            p = frame.pts if frame.pts is not None else (origin if last is None else last + step)
        if last is not None and p <= last:
            p = last + 1
        frame.pts = last = int(p)
        yield frame


def _one_size(frames: Iterator[av.VideoFrame], width: int, height: int) -> Iterator[av.VideoFrame]:
    """Size changes mid-stream (some broadcast captures) scaled back to the first frame's size, pts kept."""
    for frame in frames:
        if (frame.width, frame.height) != (width, height):
            resized = frame.reformat(width=width, height=height, interpolation=SWS_QUALITY)
            resized.pts = frame.pts
            frame = resized
        yield frame


def _deinterlaced(frames: Iterator[av.VideoFrame], time_base: Fraction, plan: str,
                  interlaced: str | None) -> Iterator[av.VideoFrame]:
    """``frames`` through bwdif (see :class:`~vsr.video.deinterlace.Deinterlacer`), flushed at the end."""
    deinterlacer = None
    for frame in frames:
        deinterlacer = deinterlacer or Deinterlacer(frame, time_base, plan, interlaced)
        yield from deinterlacer(frame)
    if deinterlacer is not None:
        yield from deinterlacer(None)


def _deinterlaced_where_marked(frames: Iterator[av.VideoFrame], time_base: Fraction, origin: int,
                               path: str) -> Iterator[av.VideoFrame]:
    """``--deinterlace auto`` on a source the probe found progressive: frames go through as they are until one is
    marked interlaced; from it on, bwdif deinterlaces every frame marked interlaced (with its own field order) and
    passes the others through, one frame per frame, pts unchanged. The probe samples the file but not every frame:
    this makes each frame's own mark decide."""
    deinterlacer = None
    for frame in frames:
        if deinterlacer is None:
            if not frame.interlaced_frame:
                yield frame
                continue
            when = f" {float((frame.pts - origin) * time_base):.3f} s" if frame.pts is not None else ""
            warnings.warn(f"{os.path.basename(path)}: frames marked interlaced from{when} on, after progressive "
                          "ones: deinterlacing those with bwdif (--deinterlace off keeps them as they are)")
            deinterlacer = Deinterlacer(frame, time_base, "frame", "flagged")
        yield from deinterlacer(frame)
    if deinterlacer is not None:
        yield from deinterlacer(None)


def _copy_rgb(frame, out: np.ndarray) -> None:
    """Copies a packed RGB frame's pixels into ``out`` (H, W, 3) once, without ``to_ndarray``'s intermediate array."""
    plane = frame.planes[0]
    height, row_bytes = out.shape[0], out.shape[1] * 3 * out.itemsize
    rows = np.frombuffer(plane, np.uint8, count=plane.line_size * (height - 1) + row_bytes)
    rows = np.lib.stride_tricks.as_strided(rows, (height, row_bytes), (plane.line_size, 1))
    out.reshape(height, -1)[:] = rows.view(out.dtype.newbyteorder("<"))  # rgb24 / rgb48le


def _check_complete(container, stream, path: str, decoded: int, stats: dict) -> None:
    """Fail loudly when a whole-file decode lost frames, rather than let a short output pass as complete."""
    if decoded == 0:
        raise VsrError(f"no decodable video frames in {path}")
    # Only MP4/MOV counts are exact: their index lists every sample, one packet per frame, edit-list cuts marked
    # discard. AVI indexes hold dropped-frame placeholders and TS may split frames into fields, so not checked.
    if "mp4" not in container.format.name:
        return
    if stream.frames and stats["packets"] < stream.frames:
        raise VsrError(f"{path} is truncated: it holds {stats['packets']} of the {stream.frames} frames "
                       "its index lists")
    if decoded < stats["shown"]:
        raise VsrError(f"{path} is corrupt: decoded {decoded} of {stats['shown']} frames")
