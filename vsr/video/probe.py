"""Opening inputs and describing them: :func:`probe` -> :class:`VideoInfo`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av

from vsr.errors import VsrError
from vsr.video.colour import frame_colour, pix_fmt_bits

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts"}


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a file. ``title`` is the title tag (MP4's track name; an attachment's file name)."""

    index: int
    type: str
    codec: str
    language: str | None
    title: str | None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds. ``rotation`` is counter-clockwise degrees (PyAV's convention, 0/90/180/270)."""

    path: str
    container: str
    width: int
    height: int
    pix_fmt: str
    codec: str
    fps: Fraction | None
    time_base: Fraction
    frames: int | None
    duration: float | None
    start_time: int | None
    rotation: int
    color_range: str | None
    color_space: str | None
    color_primaries: str | None
    color_trc: str | None
    bit_depth: int
    streams: tuple[StreamInfo, ...]

    @property
    def color_tags(self) -> dict[str, str | None]:
        """The four colour tags as keyword arguments for :class:`~vsr.video.VideoWriter`."""
        return {"color_range": self.color_range, "color_space": self.color_space,
                "color_primaries": self.color_primaries, "color_trc": self.color_trc}


def error_text(err: BaseException) -> str:
    """The first line of an exception's message, for one-line VsrErrors."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0]


def open_input(path) -> av.container.InputContainer:
    """Open a media file for reading; every failure becomes a one-line VsrError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VsrError(f"no such file: {path}")
    if os.path.isdir(path):
        raise VsrError(f"not a video file: {path} (it is a folder)")
    if os.path.getsize(path) == 0:
        raise VsrError(f"not a video file: {path} (empty file)")
    try:
        return av.open(path, metadata_errors="replace")
    except PermissionError:
        raise VsrError(f"cannot read {path}: permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VsrError(f"not a video file: {path} ({error_text(err)})") from None


def main_video_stream(container, path) -> av.video.stream.VideoStream:
    """The stream vsr upscales: the first video stream that is not cover art."""
    # Cover art in audio files is a one-picture "video" stream marked attached_pic: not a video.
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise VsrError(f"no video stream in {path}")


def decode_frames(container, stream, path, stats: dict | None = None) -> Iterator[av.VideoFrame]:
    """Every frame of ``stream`` in presentation order; any demux or decode error becomes one VsrError.

    ``stats``, when given, counts ``packets`` demuxed and ``shown`` (packets not marked discard by an edit list).
    """
    count = 0
    try:
        for packet in container.demux(stream):
            if stats is not None and packet.dts is not None:
                stats["packets"] += 1
                stats["shown"] += not packet.is_discard
            for frame in packet.decode():
                count += 1
                yield frame
    except av.FFmpegError as err:
        raise VsrError(f"cannot decode {path} after {count} frames: {error_text(err)}") from None


def stream_codec_name(stream) -> str:
    """A stream's codec by FFmpeg's canonical name ("ass", "mp3", "klv", ...); "unknown" where there is none."""
    ctx = stream.codec_context
    if ctx is not None:
        return ctx.codec.canonical_name
    # Data streams without a decoder still name their codec; an attachment's name is its file name.
    return (stream.type != "attachment" and getattr(stream, "name", None)) or "unknown"


def stream_title(stream) -> str | None:
    metadata = stream.metadata
    # MP4/MOV store a track's title as its "name"; attachments are known by their file name.
    return metadata.get("title") or metadata.get("name") or metadata.get("filename")


def probe(path) -> VideoInfo:
    """Describe a video file; decodes its first frame (rotation and colour tags live on frames).

    Raises:
        VsrError: missing or unreadable file, not a video, no video stream, or no decodable frame.
    """
    path = os.fspath(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        first = next(decode_frames(container, stream, path), None)
        if first is None:
            raise VsrError(f"no decodable video frames in {path}")
        time_base = stream.time_base or Fraction(1, 1000)
        if stream.duration:
            duration = float(stream.duration * time_base)
        else:
            duration = container.duration / av.time_base if container.duration else None
        pix_fmt = stream.codec_context.pix_fmt or first.format.name
        color_range, color_space, color_primaries, color_trc = frame_colour(first, stream)
        streams = tuple(
            StreamInfo(s.index, s.type, stream_codec_name(s), s.metadata.get("language"), stream_title(s))
            for s in container.streams
        )
        return VideoInfo(
            path=path, container=container.format.name, width=stream.width or first.width,
            height=stream.height or first.height, pix_fmt=pix_fmt, codec=stream.codec_context.codec.canonical_name,
            fps=stream.average_rate or None, time_base=time_base, frames=stream.frames or None, duration=duration,
            start_time=stream.start_time, rotation=round(first.rotation / 90) * 90 % 360, color_range=color_range,
            color_space=color_space, color_primaries=color_primaries, color_trc=color_trc,
            bit_depth=pix_fmt_bits(pix_fmt), streams=streams,
        )
