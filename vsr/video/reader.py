"""Decoding: :func:`read_frames` turns a video into RGB batches that carry each frame's pts, and
:func:`index_video` lists every frame's pts before any decode (see :mod:`~vsr.video.index`).

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
from vsr.video.index import FrameIndex, field_times, index_identity, packet_times, scan_packets
from vsr.video.probe import VideoInfo, decode_frames, main_video_stream, open_input, probe

# Frames decoded from the start to confirm an index made from packets (the probe judges timestamps on as many).
INDEX_CHECK_FRAMES = 16
# Keyframes tried before a window's first frame, nearest first (by position in the list of earlier keyframes);
# after them the window is decoded from the start of the file.
SEEK_TRIES = (0, 1, 3)


@dataclass
class FrameBatch:
    """Consecutive decoded frames: ``frames`` (N,H,W,3) uint8 (or uint16) RGB, ``pts`` in ``time_base``."""

    frames: np.ndarray
    pts: list[int]
    time_base: Fraction | None = None


def read_frames(path, batch_size: int = 8, start: float | None = None, end: float | None = None,
                depth: int = 8, deinterlace: str = "auto", info: VideoInfo | None = None,
                alloc: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None, index: FrameIndex | None = None,
                window: tuple[int, int] | None = None) -> Iterator[FrameBatch]:
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
        index: The file's :func:`index_video` (with the same ``deinterlace``), if the caller has it.
        window: Read frames ``[first, stop)`` of ``index`` instead of ``start``/``end``: decoded from a keyframe
            before the first (or from the start), each frame checked to be the one the index lists. ``start``
            reads its span of the index this way too, so an excerpt starts on exactly the first frame after it.

    Yields:
        FrameBatch with C-contiguous (N,H,W,3) frames and pts in its ``time_base``: the input video's, or half of
        it for one frame per field. The pts are the frames' display times as FFmpeg's best-effort rule gives them
        (see :func:`~vsr.video.probe.timestamp_source`): the dts where the pts are out of order (AVI with
        B-frames), the previous time plus one frame duration where a frame has none (raw elementary streams),
        and a time that does not increase is bumped to the previous + 1, so the writer can encode it.

    Raises:
        VsrError: bad file (see :func:`probe`), a decode error, a file that ends before its index says it should,
            or (reading a window) a frame that is not the one the index lists.
    """
    path = os.fspath(path)
    if batch_size < 1:
        raise VsrError(f"batch size must be at least 1, got {batch_size}")
    if depth not in (8, 16):
        raise VsrError(f"depth must be 8 or 16, got {depth}")
    info = info or probe(path)
    if window is None and start:
        index = index or index_video(path, info, deinterlace)
        window = index.span(start, end)
    if window is not None:
        if index is None:
            raise VsrError("a window of frames needs the video's index")
        yield from _read_window(path, info, deinterlace, index, window, batch_size, depth, alloc)
        return
    plan = deinterlace_plan(deinterlace, info.interlaced)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        stats = {"packets": 0, "shown": 0, "decoded": 0}
        first, shown = _shown_frames(container, stream, path, info, plan, stats, watch_marks=deinterlace == "auto")
        out_time_base = output_time_base(stream.time_base or Fraction(1, 1000), plan)
        end_pts = None
        if end is not None:
            origin, time_base = stream.start_time or 0, stream.time_base or Fraction(1, 1000)
            end_pts = (origin + end / time_base) * (time_base / out_time_base)
        if first is not None:
            kept = itertools.takewhile(lambda frame: end_pts is None or frame.pts < end_pts, shown)
            yield from _batches(kept, first, stream, depth, batch_size, out_time_base, alloc)
        if end is None:
            _check_complete(container, stream, path, stats["decoded"], stats)


def index_video(path, info: VideoInfo | None = None, deinterlace: str = "auto") -> FrameIndex:
    """Every frame's display time, as :func:`read_frames` gives them, before any decode (see :mod:`~vsr.video.index`).

    Made from the packets alone where they tell (checked against the decode of the first frames); otherwise the
    timestamps are decoded, without converting any pixel.

    Raises:
        VsrError: bad file (see :func:`probe`) or a demux or decode error.
    """
    path = os.fspath(path)
    info = info or probe(path)
    plan = deinterlace_plan(deinterlace, info.interlaced)
    scan = scan_packets(path)
    times = packet_times(scan, info.timestamps)
    if times is not None and plan == "field":
        # Frames flagged progressive pass bwdif as one frame, not two: only the decoder knows which those are.
        times = None if info.interlaced == "flagged" else field_times(times)
    if times is not None:
        decoded = _decoded_times(path, info, plan, INDEX_CHECK_FRAMES)
        if decoded != times[: len(decoded)]:
            times = None  # e.g. field pictures in packets of their own: the decoder's count is the truth
    source = "packets" if times is not None else "decode"
    if times is None:
        times = _decoded_times(path, info, plan)
    return FrameIndex(
        times=times, time_base=output_time_base(scan.time_base, plan), input_time_base=scan.time_base,
        origin=scan.origin, keyframes=scan.keyframes(),
        seekable=source == "packets" and not scan.raw and all(p.pts is not None for p in scan.packets),
        source=source,
        identity=index_identity(path, plan),
    )


def _decoded_times(path: str, info: VideoInfo, plan: str | None, limit: int | None = None) -> list[int]:
    """The pts :func:`read_frames` gives, by decoding (no RGB conversion); of the first ``limit`` decoded frames."""
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        stats = {"packets": 0, "shown": 0, "decoded": 0}
        first, shown = _shown_frames(container, stream, path, info, plan, stats, limit)
        return [frame.pts for frame in shown] if first is not None else []


def _read_window(path: str, info: VideoInfo, deinterlace: str, index: FrameIndex, window: tuple[int, int],
                 batch_size: int, depth: int, alloc) -> Iterator[FrameBatch]:
    """Frames ``window`` = [first, stop) of ``index``, each checked to be the one the index lists.

    Decodes from a keyframe before the first (where the index allows seeking), or from the start. A decode that
    starts late (the demuxer landed after that keyframe, as in MPEG-TS) is caught at the first frame it keeps,
    which must be the window's first, and redone from an earlier keyframe, finally from the start of the file.
    """
    first, stop = window
    if not 0 <= first <= stop <= len(index):
        raise VsrError(f"frames {first}-{stop} are outside the {len(index)} frames of {path}")
    if first == stop:
        return
    plan = deinterlace_plan(deinterlace, info.interlaced)
    points = index.seek_points(first)
    tries = [points[i] for i in SEEK_TRIES if i < len(points)] + [None]
    times = index.times
    for seek in tries:
        with open_input(path) as container:
            stream = main_video_stream(container, path)
            if seek is not None:
                try:
                    container.seek(seek, stream=stream, backward=True)
                except av.FFmpegError:
                    continue  # the next try starts earlier, the last from the start
            stats = {"packets": 0, "shown": 0, "decoded": 0}
            decoded, shown = _shown_frames(container, stream, path, info, plan, stats,
                                           watch_marks=deinterlace == "auto")
            wanted = itertools.dropwhile(lambda frame: frame.pts < times[first], shown)
            head = next(wanted, None)
            if seek is not None and (head is None or head.pts != times[first]):
                continue  # started after the first wanted frame: go back further
            if decoded is None:
                raise VsrError(f"no decodable video frames in {path}")
            kept = _checked(itertools.chain([head] if head is not None else [], wanted), index, first, stop, path)
            yield from _batches(kept, decoded, stream, depth, batch_size, index.time_base, alloc)
            return


def _checked(frames: Iterator[av.VideoFrame], index: FrameIndex, first: int, stop: int,
             path: str) -> Iterator[av.VideoFrame]:
    """``frames`` as frames ``first`` to ``stop - 1`` of ``index``; a missing, extra or absent frame is a VsrError."""
    k = first
    for frame in frames:
        if k == stop:
            return
        if frame.pts != index.times[k]:
            raise VsrError(f"decoding {path} gave a frame at {index.seconds(frame.pts):.3f}s where its index lists "
                           f"frame {k + 1} at {index.seconds(index.times[k]):.3f}s")
        yield frame
        k += 1
    if k < stop:
        raise VsrError(f"{path} ends after frame {k} of the {stop} its index lists")


def _shown_frames(container, stream, path: str, info: VideoInfo, plan: str | None, stats: dict,
                  limit: int | None = None, watch_marks: bool = False
                  ) -> tuple[av.VideoFrame | None, Iterator[av.VideoFrame]]:
    """(first decoded frame, every frame shown with its display time as pts, deinterlaced by ``plan``).

    ``limit``: stop after that many decoded frames (without flushing the deinterlacer). ``watch_marks``: with no
    plan (``--deinterlace auto`` on a source the probe found progressive), frames marked interlaced are still
    deinterlaced, one frame per frame with the same pts (so the index, made without it, still holds).
    """
    stream.thread_type = "AUTO"
    time_base = stream.time_base or Fraction(1, 1000)
    origin = stream.start_time or 0
    step = max(round(1 / (stream.average_rate * time_base)), 1) if stream.average_rate else 1
    timed = _timed(decode_frames(container, stream, path, stats), info.timestamps, origin, step, stats)
    if limit is not None:
        timed = itertools.islice(timed, limit)
    first = next(timed, None)
    if first is None:
        return None, iter(())
    shown = _one_size(itertools.chain([first], timed), first.width, first.height)
    if plan:
        shown = _deinterlaced(shown, time_base, plan, info.interlaced, flush=limit is None)
    elif watch_marks:
        shown = _deinterlaced_where_marked(shown, time_base, origin, path)
    return first, shown


def _batches(frames: Iterator[av.VideoFrame], first: av.VideoFrame, stream, depth: int, batch_size: int,
             time_base: Fraction, alloc) -> Iterator[FrameBatch]:
    """``frames`` converted to RGB (with the colour of ``first``, the first decoded frame) in batches."""
    rgb_format, dtype = ("rgb24", np.uint8) if depth == 8 else ("rgb48le", np.uint16)
    width, height = first.width, first.height
    color_range, color_space, _, _ = frame_colour(first, stream)
    sws = sws_args(first.format.name, color_space, color_range, width, height)
    convert = dict(format=rgb_format, src_colorspace=sws.get("matrix"), src_color_range=sws.get("range"),
                   interpolation=SWS_QUALITY)
    batch, pts = None, []
    for frame in frames:
        if batch is None:  # a fresh array per batch: the consumer may still hold the previous one
            batch = (alloc or np.empty)((batch_size, height, width, 3), dtype)
        _copy_rgb(frame.reformat(**convert), batch[len(pts)])
        pts.append(frame.pts)
        if len(pts) == batch_size:
            yield FrameBatch(batch, pts, time_base)
            batch, pts = None, []
    if pts:
        yield FrameBatch(batch[: len(pts)], pts, time_base)


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


def _deinterlaced(frames: Iterator[av.VideoFrame], time_base: Fraction, plan: str, interlaced: str | None,
                  flush: bool = True) -> Iterator[av.VideoFrame]:
    """``frames`` through bwdif (see :class:`~vsr.video.deinterlace.Deinterlacer`), flushed at the end."""
    deinterlacer = None
    for frame in frames:
        deinterlacer = deinterlacer or Deinterlacer(frame, time_base, plan, interlaced)
        yield from deinterlacer(frame)
    if deinterlacer is not None and flush:
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
