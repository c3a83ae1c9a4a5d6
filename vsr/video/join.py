"""Joining separately encoded video-only segments into one file, with every other stream of the source (resume).

A long ``vsr enhance --resume`` job encodes its frames as segments (each a :class:`~vsr.video.VideoWriter` with
``source=None``, the same settings including the colour tags, consecutive frames); :func:`join_segments` then
remuxes their packets in order into the final file, pts unchanged (and dts, except where a segment's B-frame
lead-in must be refitted after the previous segment, see :func:`_segment_packets`). Nothing is re-encoded, so the
result has the same frames and pts as one uninterrupted encode.

Segment container (:func:`segment_suffix`): MP4 stores every pts exactly in the input's time base (the writer
sets the track timescale) and every packet's dts, and holds all of vsr's codecs (H.264, HEVC, AV1, VP9, FFV1,
MPEG-4), so segments are ``.mp4`` (``.mov`` for a MOV output). Matroska segments are refused: they round pts to
milliseconds and do not store dts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vsr.atomic import create_temp
from vsr.errors import VsrError
from vsr.video.colour import tag_stream
from vsr.video.probe import error_text, main_video_stream, open_input
from vsr.video.streams import StreamCopier
from vsr.video.tags import add_tags, tag_options
from vsr.video.container import (
    check_output_path,
    check_summary,
    close_quietly,
    container_options,
    exact_times,
    summarize,
    tag_hevc_for_apple,
)


@dataclass
class JoinResult:
    """What :func:`join_segments` wrote: ``frames`` video frames, the last at ``last_pts`` (in the given
    ``time_base``), and one line per stream left out or converted."""

    frames: int
    last_pts: int | None
    warnings: list[str] = field(default_factory=list)


def segment_suffix(output) -> str:
    """The extension to give the resume segments of an encode to ``output``: ".mov" for MOV, else ".mp4"."""
    return ".mov" if Path(output).suffix.lower() == ".mov" else ".mp4"


def _segment_params(path: Path) -> tuple:
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        ctx = stream.codec_context
        return (ctx.codec.canonical_name, ctx.width, ctx.height, ctx.pix_fmt), bytes(ctx.extradata or b"")


def _check_segments(segments: Sequence[Path]) -> None:
    """Segments join only if they were encoded alike: same codec, size, pixel format and stream headers."""
    for path in segments:
        if path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise VsrError(f"segment {path} is not an MP4/MOV file (segments must store exact pts and dts; "
                           "see segment_suffix)")
    first_params, first_extra = _segment_params(segments[0])
    for path in segments[1:]:
        params, extra = _segment_params(path)
        if params != first_params:
            raise VsrError(f"segment {path} does not match {segments[0]}: {params} vs {first_params} "
                           "(codec, width, height, pix_fmt)")
        if extra != first_extra:
            raise VsrError(f"segment {path} was encoded with other settings than {segments[0]} "
                           "(its codec headers differ); encode it again")


def join_segments(segments: Sequence, output, *, source, time_base: Fraction, copy_audio: bool = True,
                  copy_subtitles: bool = True, start: float | None = None, end: float | None = None,
                  overwrite: bool = False, rotation: int = 0, fps: Fraction | None = None, verify: bool = True,
                  rebase: bool = False, tags: dict[str, str] | None = None, **color_tags: str | None) -> JoinResult:
    """Remux the video packets of ``segments`` in order, plus every other stream of ``source``, into ``output``.

    Written to a temp file beside ``output`` and renamed into place only when complete and checked.

    Args:
        segments: Video-only files encoded with identical settings, holding consecutive frames.
        output: The final file; its extension picks the container.
        source: The input video whose other streams are copied, as :class:`~vsr.video.VideoWriter` does; None
            for video only.
        time_base: The input video stream's time base (the segments' frames were written with pts in it).
        copy_audio: Copy the audio streams of ``source``.
        copy_subtitles: Copy (or convert) its subtitle streams.
        start: As for VideoWriter: the excerpt's start given to ``read_frames``; other streams are cut to it.
        end: As for VideoWriter: the excerpt's end; other streams are cut where the last frame ends.
        overwrite: Replace an existing ``output``.
        rotation: Display rotation to tag (counter-clockwise degrees), as for VideoWriter; 0 keeps the segments'.
        fps: The input's nominal rate, for the length of the last frame when cutting at ``end`` (as VideoWriter
            takes it); None uses the last frame-to-frame step.
        verify: Read the result back and check frame count and first/last pts.
        rebase: As for VideoWriter: the output's clock starts at the first frame (every stream moved alike).
        tags: As for VideoWriter: container tags added after the source's.
        **color_tags: color_range, color_space, color_primaries, color_trc to tag on the container (None keeps
            the segments'). Tags only: give the segments' writers the same ones, as they decide the RGB->YUV maths
            and the tags inside the bitstream, which decoders prefer.

    Returns:
        A :class:`JoinResult`.

    Raises:
        VsrError: no segments, a missing or unreadable one, segments encoded differently, an output that cannot
            be written, or a result that fails the check. ``output`` is untouched then.
    """
    unknown = set(color_tags) - {"color_range", "color_space", "color_primaries", "color_trc"}
    if unknown:
        raise TypeError(f"join_segments() got unexpected keyword arguments {sorted(unknown)}")
    if not segments:
        raise VsrError("no segments to join")
    segments = [Path(p) for p in segments]
    output, time_base = Path(output), Fraction(time_base)
    check_output_path(output, source, overwrite)
    _check_segments(segments)
    temp = create_temp(output)
    out = copier = None
    try:
        out = av.open(str(temp), "w", container_options={**container_options(output, time_base),
                                                         **tag_options(output, tags)})
        with open_input(segments[0]) as first:
            # The template's codec parameters (headers, size, colour, rotation) are copied, not referenced.
            video = out.add_stream_from_template(main_video_stream(first, segments[0]), opaque=True)
        video.time_base = time_base
        tag_stream(video, **{k: color_tags.get(k) for k in ("color_range", "color_space", "color_primaries",
                                                            "color_trc")})
        if rotation % 360:
            video.set_display_rotation(rotation % 360)
        tag_hevc_for_apple(video, output)  # (a template copy drops the segments' tag)
        warnings: list[str] = []
        if source is not None:
            copier = StreamCopier(out, os.fspath(source), audio=copy_audio, subtitles=copy_subtitles,
                                  span=(start, end), negative_times=exact_times(output), warnings=warnings,
                                  rebase=rebase)
            copier.tag_video(video)
        add_tags(out, output, tags, warnings)
        frames, first_pts, last_pts, step, shift = _mux_segments(out, video, segments, time_base, copier,
                                                                 start is not None, rebase)
        if fps:
            step = 1 / (Fraction(fps).limit_denominator(1_000_000) * time_base)
        if copier is not None:
            first = first_pts * time_base if start is not None else None
            stop = (last_pts + (step or 1)) * time_base if end is not None else None
            copier.mux(None, first=first, stop=stop, shift=shift * time_base)
        out.close()
        if copier is not None:
            copier.close()
        if verify:
            check_summary(summarize(temp), output, frames=frames, first_pts=first_pts - shift,
                          last_pts=last_pts - shift, time_base=time_base, exact=exact_times(output))
        os.replace(temp, output)
    except BaseException as err:
        close_quietly(out, copier.source if copier is not None else None)
        temp.unlink(missing_ok=True)
        if isinstance(err, (av.FFmpegError, OSError)):
            raise VsrError(f"cannot write {output}: {error_text(err)}") from None
        raise
    return JoinResult(frames, last_pts, warnings)


def _mux_segments(out, video, segments: list[Path], time_base: Fraction, copier, cut_start: bool, rebase: bool):
    """Mux every video packet of the segments in order, with the other streams interleaved as they catch up.

    Returns:
        (frames, first pts, last pts, last frame-to-frame step, shift), pts in ``time_base`` on the source's
        clock; ``shift`` is what was subtracted from every pts written (the first frame's pts with ``rebase``).
    """
    frames, first_pts, last_pts, previous, last_dts, shift = 0, None, None, None, None, None
    for path in segments:
        count = 0
        for packet in _segment_packets(path, last_dts):
            pts = round(packet.pts * packet.time_base / time_base)
            if count == 0 and last_pts is not None and pts <= last_pts:
                raise VsrError(f"segment {path} starts before the previous one ends (at {float(pts * time_base):.6f}s"
                               f", not after {float(last_pts * time_base):.6f}s): segments out of order or overlapping")
            first_pts = pts if first_pts is None else min(first_pts, pts)
            if last_pts is None or pts > last_pts:
                previous, last_pts = last_pts, pts
            elif previous is None or pts > previous:
                previous = pts  # packets come in decode order: the two latest pts, whatever their order
            last_dts = packet.dts * packet.time_base
            if shift is None:  # the first packet is the first frame shown (encodes start with a keyframe)
                shift = pts if rebase else 0
            if shift:
                ticks = round(shift * time_base / packet.time_base)
                packet.pts, packet.dts = packet.pts - ticks, packet.dts - ticks
            packet.stream = video
            out.mux(packet)
            count += 1
            if copier is not None:
                copier.mux(last_dts, first=first_pts * time_base if cut_start else None, shift=shift * time_base)
        if count == 0:
            raise VsrError(f"segment {path} holds no video frames")
        frames += count
    return frames, first_pts, last_pts, (last_pts - previous if previous is not None else None), shift or 0


def _segment_packets(path: Path, last_dts: Fraction | None) -> Iterator[av.Packet]:
    """The video packets of one segment in decode order; the lead-in's dts moved after ``last_dts`` if needed.

    An encode with B-frames starts with a lead-in: packets decoded before the first frame is shown, their dts
    invented by the encoder before the first pts. How far before depends on the encoder (x265 uses none for a
    segment too short for B-frames) and, with variable frame rate, on the frames' durations, so a lead-in may
    reach back to or before the previous segment's last dts, which no muxer accepts. Such a lead-in gets decode
    times spread between the two (decoders care only about the order); all other timestamps stay as encoded.
    """
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        lead_in: list | None = []
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the demuxer's end-of-stream flush packet
                if packet.pts is None or packet.dts is None:
                    raise VsrError(f"segment {path} has a packet without timestamps (use .mp4 or .mov segments, "
                                   "which store them all)")
                if lead_in is not None:
                    # The first packet is the first frame shown (encodes start with a keyframe).
                    if not lead_in or packet.dts < lead_in[0].pts:
                        lead_in.append(packet)
                        continue
                    yield from _fit_lead_in(lead_in, last_dts, path)
                    lead_in = None
                yield packet
            if lead_in:
                yield from _fit_lead_in(lead_in, last_dts, path)
        except av.FFmpegError as err:
            raise VsrError(f"cannot read segment {path}: {error_text(err)}") from None


def _fit_lead_in(lead_in: list, last_dts: Fraction | None, path: Path) -> list:
    first = lead_in[0]
    tb = first.time_base
    if last_dts is None or first.dts * tb > last_dts or first.pts * tb <= last_dts:
        return lead_in  # nothing to fit, or segments out of order (reported by the caller)
    low = math.floor(last_dts / tb)
    room = first.pts - low  # ticks from the previous segment's last decode time to this segment's first frame
    if room <= len(lead_in):
        raise VsrError(f"cannot join {path}: its time base ({tb}) has no room for the decode times of its first "
                       f"{len(lead_in)} packets after the previous segment's")
    for k, packet in enumerate(lead_in, 1):
        packet.dts = low + room * k // (len(lead_in) + 1)
    return lead_in
