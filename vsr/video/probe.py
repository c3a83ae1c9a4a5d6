"""Opening inputs and describing them: :func:`probe` -> :class:`VideoInfo`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av

from vsr.errors import VsrError
from vsr.video.colour import frame_colour, pix_fmt_bits
from vsr.video.deinterlace import field_order

# Still images, the one list: `enhance` upscales them as pictures, `train` and `eval` read them (`vsr.data`).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# What archives hold besides the usual web containers: DVD (MPEG-PS .mpg/.vob), broadcast and camcorder transport
# streams (.ts/.m2ts/.mts), DV tapes (.dv), elementary streams (.m2v/.h264/.hevc) and older formats.
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob",
              ".dv", ".m2v", ".h264", ".264", ".hevc", ".265", ".flv", ".wmv", ".asf", ".3gp", ".ogv", ".mxf"}
# Frames decoded by probe() to judge interlacing and which timestamps to trust: the first PROBE_FRAMES, and
# SAMPLE_FRAMES after a seek to each of SAMPLE_AT (fractions of the duration), so that a progressive leader (a slate,
# a menu) or a clean first GOP does not decide for the whole file.
PROBE_FRAMES = 16
SAMPLE_FRAMES = 8
SAMPLE_AT = (0.25, 0.5, 0.75)


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
    sample_aspect_ratio: Fraction | None = None  # None: square pixels
    interlaced: str | None = None  # "flagged" (frames marked, each with its field order), "tff"/"bff" (stream), None
    timestamps: str = "pts"  # which frame timestamps read_frames uses: "pts" or "dts" (see timestamp_source)

    @property
    def display_aspect(self) -> Fraction:
        """Width / height as the picture is shown (the storage aspect times the sample aspect ratio)."""
        return Fraction(self.width, self.height) * (self.sample_aspect_ratio or 1)

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


def timestamp_source(frames, *more_runs) -> str:
    """Which timestamps of decoded frames give their display times: "pts", or "dts" where the pts are not usable.

    FFmpeg's best-effort rule (libavcodec's guess_correct_pts), applied to stretches of frames at once rather than
    frame by frame, so that every frame of a file is read on one clock: trust the pts unless they go backwards more
    often than the dts do. AVI and raw elementary streams have no real pts: with B-frames the decoder hands out
    frames in display order carrying the pts of the packets they came in (2, 6, 8, 4, ... ), while the dts of the
    packet that released each frame counts up.

    Args:
        frames: consecutive decoded frames (anything with ``pts`` and ``dts``).
        *more_runs: more runs of consecutive frames from elsewhere in the file (after a seek); the step from one
            run to the next is not counted.
    """
    faulty = {"pts": 0, "dts": 0}
    seen = {"pts": 0, "dts": 0}
    for run in (frames, *more_runs):
        last = {"pts": None, "dts": None}
        for frame in run:
            for key in ("pts", "dts"):
                value = getattr(frame, key)
                if value is None:
                    continue
                seen[key] += 1
                faulty[key] += last[key] is not None and value <= last[key]
                last[key] = value
    if seen["dts"] and (not seen["pts"] or faulty["pts"] > faulty["dts"]):
        return "dts"
    return "pts"


def sample_aspect(stream) -> Fraction | None:
    """The stream's sample (pixel) aspect ratio; None for square pixels or none stated."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar > 0 and sar != 1 else None


def probe(path) -> VideoInfo:
    """Describe a video file; decodes its first frame (rotation and colour tags live on frames).

    Raises:
        VsrError: missing or unreadable file, not a video, no video stream, or no decodable frame.
    """
    path = os.fspath(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        first, frames = None, []
        for frame in decode_frames(container, stream, path):
            if first is None:
                first = frame
            frames.append(_Marks.of(frame))  # not the frame: 16 decoded 4K frames would hold 400 MB
            if len(frames) == PROBE_FRAMES:
                break
        if first is None:
            raise VsrError(f"no decodable video frames in {path}")
        time_base = stream.time_base or Fraction(1, 1000)
        if stream.duration:
            duration = float(stream.duration * time_base)
        else:
            duration = container.duration / av.time_base if container.duration else None
        samples = _sample_across(container, stream, path, duration) if len(frames) == PROBE_FRAMES else []
        # Frames marked interlaced carry their own field order (and mixed DVD content marks each frame); a
        # field order in the stream's parameters alone covers codecs that mark no frames.
        if any(f.interlaced_frame for run in (frames, *samples) for f in run):
            interlaced = "flagged"
        else:
            interlaced = field_order(stream.codec_context.field_order)
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
            bit_depth=pix_fmt_bits(pix_fmt), streams=streams, sample_aspect_ratio=sample_aspect(stream),
            interlaced=interlaced, timestamps=timestamp_source(frames, *samples),
        )


@dataclass(frozen=True)
class _Marks:
    """What probe keeps of a decoded frame."""

    pts: int | None
    dts: int | None
    interlaced_frame: bool

    @classmethod
    def of(cls, frame: av.VideoFrame) -> _Marks:
        return cls(frame.pts, frame.dts, bool(frame.interlaced_frame))


def _sample_across(container, stream, path: str, duration: float | None) -> list[list[_Marks]]:
    """Runs of SAMPLE_FRAMES frames decoded after a seek to each of SAMPLE_AT, as far as the file allows.

    Best effort: a file that cannot seek (raw elementary streams) or that fails to decode there gives fewer runs,
    never an error (`read_frames` still watches every frame's interlace mark, see `vsr.video.reader`).
    """
    if not duration or not stream.time_base:
        return []
    origin = stream.start_time or 0
    runs = []
    for fraction in SAMPLE_AT:
        try:
            container.seek(origin + int(duration * fraction / stream.time_base), stream=stream, backward=True)
            run = []
            for frame in decode_frames(container, stream, path):
                run.append(_Marks.of(frame))
                if len(run) == SAMPLE_FRAMES:
                    break
        except (VsrError, av.FFmpegError, OSError):
            break
        runs.append(run)
    return runs
