"""Video I/O with PyAV: probe a file, decode it into uint8 RGB batches that carry each frame's pts, and write
upscaled frames back with those pts, the input's colour tags and its audio copied packet for packet.

Colour: YUV<->RGB uses the input's matrix and range (tags, else BT.709 for HD / BT.601 for SD and limited range,
as players assume); the writer converts back with the matrix it tags on the output, so colours survive.
Time: ``start``/``end`` are seconds from the first frame of the video stream; pts are never renumbered.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from vsr.errors import VsrError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts"}
CODECS = ("libx264", "libx265", "libsvtav1", "ffv1", "h264_nvenc", "hevc_nvenc")

# FFmpeg's enum codes (AVColorRange, AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic) by the names
# ffprobe prints. Code 2 ("unknown") is left out on purpose: it reads back as None.
COLOR_RANGES = {"tv": 1, "pc": 2}
COLOR_SPACES = {"gbr": 0, "bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "ycgco": 8,
                "bt2020nc": 9, "bt2020c": 10, "smpte2085": 11, "ictcp": 14}
COLOR_PRIMARIES = {"bt709": 1, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "film": 8, "bt2020": 9,
                   "smpte428": 10, "smpte431": 11, "smpte432": 12, "jedec-p22": 22}
COLOR_TRCS = {"bt709": 1, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7, "linear": 8, "log100": 9,
              "log316": 10, "iec61966-2-4": 11, "bt1361e": 12, "iec61966-2-1": 13, "bt2020-10": 14,
              "bt2020-12": 15, "smpte2084": 16, "smpte428": 17, "arib-std-b67": 18}
# swscale's names for the matrix and range of each tag (what VideoFrame.reformat takes).
_SWS_MATRIX = {"bt709": "ITU709", "fcc": "FCC", "bt470bg": "ITU601", "smpte170m": "ITU601", "smpte240m": "SMPTE240M",
               "bt2020nc": "BT2020", "bt2020c": "BT2020"}
_SWS_RANGE = {"tv": "MPEG", "pc": "JPEG"}

_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 28, "h264_nvenc": 19, "hevc_nvenc": 21}
_MAX_CRF = {"libx264": 51, "libx265": 51, "libsvtav1": 63, "h264_nvenc": 51, "hevc_nvenc": 51}
# x264 preset names translated for encoders that number their presets instead.
_SVT_PRESETS = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8, "medium": 6, "slow": 4,
                "slower": 3, "veryslow": 2}
_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p3",
                  "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7"}


@dataclass(frozen=True)
class StreamInfo:
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
        """The four colour tags as keyword arguments for :class:`VideoWriter`."""
        return {"color_range": self.color_range, "color_space": self.color_space,
                "color_primaries": self.color_primaries, "color_trc": self.color_trc}


@dataclass
class FrameBatch:
    """Consecutive decoded frames: ``frames`` (N,H,W,3) uint8 RGB, ``pts`` in the video stream's ``time_base``."""

    frames: np.ndarray
    pts: list[int]
    time_base: Fraction | None = None


def _name(table: dict[str, int], code: int | None) -> str | None:
    return next((name for name, c in table.items() if c == code), None)


def _error_text(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0]


def _open_input(path) -> av.container.InputContainer:
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
        raise VsrError(f"not a video file: {path} ({_error_text(err)})") from None


def _video_stream(container, path) -> av.video.stream.VideoStream:
    # Cover art in audio files is a one-picture "video" stream marked attached_pic: not a video.
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise VsrError(f"no video stream in {path}")


def _decode_frames(container, stream, path, stats: dict | None = None) -> Iterator[av.VideoFrame]:
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
        raise VsrError(f"cannot decode {path} after {count} frames: {_error_text(err)}") from None


def _colour(frame: av.VideoFrame, stream) -> tuple[str | None, str | None, str | None, str | None]:
    """(range, space, primaries, trc) tag names: the frame's own, else the stream's; None where untagged."""
    ctx = stream.codec_context
    rng = _name(COLOR_RANGES, frame.color_range) or _name(COLOR_RANGES, ctx.color_range)
    if rng is None and frame.format.name.startswith("yuvj"):
        rng = "pc"  # the deprecated JPEG formats are full range by definition
    return (rng, _name(COLOR_SPACES, frame.colorspace) or _name(COLOR_SPACES, ctx.colorspace),
            _name(COLOR_PRIMARIES, frame.color_primaries) or _name(COLOR_PRIMARIES, ctx.color_primaries),
            _name(COLOR_TRCS, frame.color_trc) or _name(COLOR_TRCS, ctx.color_trc))


def _default_space(width: int, height: int) -> str:
    # Untagged video: players assume BT.709 from 720p up and BT.601 below, so do the same.
    return "bt709" if width >= 1280 or height >= 720 else "smpte170m"


def _sws_args(pix_fmt: str, color_space: str | None, color_range: str | None, width: int, height: int) -> dict:
    """reformat() keywords naming the matrix and range of a YUV format; RGB/gray formats take none."""
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or len(fmt.components) < 3:
        return {}
    matrix = _SWS_MATRIX.get(color_space or _default_space(width, height), "ITU601")
    return {"matrix": matrix, "range": _SWS_RANGE.get(color_range or "tv", "MPEG")}


def probe(path) -> VideoInfo:
    """Describe a video file; decodes its first frame (rotation and colour tags live on frames).

    Raises:
        VsrError: missing or unreadable file, not a video, no video stream, or no decodable frame.
    """
    path = os.fspath(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        first = next(_decode_frames(container, stream, path), None)
        if first is None:
            raise VsrError(f"no decodable video frames in {path}")
        time_base = stream.time_base or Fraction(1, 1000)
        if stream.duration:
            duration = float(stream.duration * time_base)
        else:
            duration = container.duration / av.time_base if container.duration else None
        pix_fmt = stream.codec_context.pix_fmt or first.format.name
        color_range, color_space, color_primaries, color_trc = _colour(first, stream)
        streams = tuple(
            StreamInfo(s.index, s.type, s.codec_context.codec.canonical_name if s.codec_context else "unknown",
                       s.metadata.get("language"), s.metadata.get("title"))
            for s in container.streams
        )
        return VideoInfo(
            path=path, container=container.format.name, width=stream.width or first.width,
            height=stream.height or first.height, pix_fmt=pix_fmt, codec=stream.codec_context.codec.canonical_name,
            fps=stream.average_rate or None, time_base=time_base, frames=stream.frames or None, duration=duration,
            start_time=stream.start_time, rotation=round(first.rotation / 90) * 90 % 360, color_range=color_range,
            color_space=color_space, color_primaries=color_primaries, color_trc=color_trc,
            bit_depth=max(c.bits for c in av.VideoFormat(pix_fmt).components), streams=streams,
        )


def read_frames(path, batch_size: int = 8, start: float | None = None, end: float | None = None,
                depth: int = 8) -> Iterator[FrameBatch]:
    """Decode a video into batches of RGB frames, each frame with its original pts.

    Args:
        path: Video file.
        batch_size: Frames per batch (the last batch may be shorter).
        start: First second to keep, counted from the video stream's first frame; None for the beginning.
        end: Keep frames before this second (same clock as ``start``); None for the end.
        depth: 8 for uint8 rgb24 frames, 16 for uint16 rgb48 (keeps 10-bit input without crushing it).

    Yields:
        FrameBatch with C-contiguous (N,H,W,3) frames. Frames without a pts get the previous pts plus one frame
        duration; a pts that does not increase is bumped to previous + 1 so the writer can encode it.

    Raises:
        VsrError: bad file (see :func:`probe`), a decode error, or a file that ends before its index says it should.
    """
    path = os.fspath(path)
    if batch_size < 1:
        raise VsrError(f"batch size must be at least 1, got {batch_size}")
    if depth not in (8, 16):
        raise VsrError(f"depth must be 8 or 16, got {depth}")
    rgb_format, dtype = ("rgb24", np.uint8) if depth == 8 else ("rgb48le", np.uint16)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1000)
        origin = stream.start_time or 0
        step = max(round(1 / (stream.average_rate * time_base)), 1) if stream.average_rate else 1
        if start:
            # Seek lands on the keyframe before `start`; the frames before it are decoded and dropped below.
            try:
                container.seek(origin + int(start / time_base), stream=stream, backward=True)
            except av.FFmpegError as err:
                raise VsrError(f"cannot seek to {start}s in {path}: {_error_text(err)}") from None
        start_pts = origin + start / time_base if start else None
        end_pts = origin + end / time_base if end is not None else None
        batch, pts, last_pts, decoded, stats = None, [], None, 0, {"packets": 0, "shown": 0}
        for frame in _decode_frames(container, stream, path, stats):
            decoded += 1
            p = frame.pts if frame.pts is not None else (origin if last_pts is None else last_pts + step)
            if start_pts is not None and p < start_pts:
                continue
            if end_pts is not None and p >= end_pts:
                break
            if last_pts is not None and p <= last_pts:
                p = last_pts + 1
            if last_pts is None:
                width, height = frame.width, frame.height
                color_range, color_space, _, _ = _colour(frame, stream)
                sws = _sws_args(frame.format.name, color_space, color_range, width, height)
            if batch is None:  # a fresh array per batch: the consumer may still hold the previous one
                batch = np.empty((batch_size, height, width, 3), dtype)
            # Size changes mid-stream (some broadcast captures) are scaled back to the first frame's size.
            rgb = frame.reformat(width=width, height=height, format=rgb_format,
                                 src_colorspace=sws.get("matrix"), src_color_range=sws.get("range"))
            batch[len(pts)] = rgb.to_ndarray()
            pts.append(int(p))
            last_pts = p
            if len(pts) == batch_size:
                yield FrameBatch(batch, pts, time_base)
                batch, pts = None, []
        if pts:
            yield FrameBatch(batch[: len(pts)], pts, time_base)
        if start is None and end is None:
            _check_complete(container, stream, path, decoded, stats)


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


def _encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    """Encoder options for a quality (``crf``, in each encoder's own scale) and an x264-style preset name."""
    if codec == "ffv1":
        return {}  # lossless: no quality knob
    if crf is None:
        crf = _DEFAULT_CRF.get(codec, 23)
    if not 0 <= crf <= _MAX_CRF.get(codec, 51):
        raise VsrError(f"crf {crf} is out of range for {codec} (0-{_MAX_CRF.get(codec, 51)})")
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset or "medium"}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        return options
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints info banners to stderr unless told errors only
        return {"crf": str(crf), "preset": str(_SVT_PRESETS.get(preset or "", preset or 8))}
    if codec.endswith("_nvenc"):
        return {"rc": "vbr", "cq": str(crf), "b": "0", "preset": _NVENC_PRESETS.get(preset or "", preset or "p4")}
    return {"crf": str(crf)}


def _check_codec(codec: str) -> None:
    if codec in CODECS:
        if codec not in available_codecs():
            raise VsrError(f"codec {codec} is not available here; available: {', '.join(available_codecs())}")
        return
    # Any other FFmpeg video encoder (mpeg4, libvpx-vp9, ...) is allowed, with generic options.
    try:
        if av.Codec(codec, "w").type == "video":
            return
    except ValueError:  # PyAV's UnknownCodecError
        pass
    raise VsrError(f"unknown codec {codec}; available: {', '.join(available_codecs())}")


@lru_cache(maxsize=None)
def _encoder_opens(codec: str) -> bool:
    """Whether a hardware encoder really opens here (NVENC is compiled in everywhere but needs an NVIDIA GPU)."""
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 25)
        ctx.open()
        return True
    except (av.FFmpegError, OSError, ValueError):
        return False


def available_codecs() -> list[str]:
    """The encoders of :data:`CODECS` that this PyAV build has (and, for NVENC, that open on this machine)."""
    return [c for c in CODECS if c in av.codecs_available and (not c.endswith("_nvenc") or _encoder_opens(c))]


def encode_decode(frames: np.ndarray, codec: str = "libx264", crf: int = 28, preset: str = "veryfast") -> np.ndarray:
    """Compress frames with a real encoder in memory and decode them again (the "realistic" degradation).

    Args:
        frames: (N,H,W,3) uint8 RGB; odd H/W are padded to even (edge pixels) and cropped back.
        codec: Encoder name, e.g. libx264 or libx265.
        crf: Quality in the encoder's scale (higher = worse).
        preset: x264-style speed preset.

    Returns:
        (N,H,W,3) uint8 RGB, the decoded frames.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VsrError(f"encode_decode needs (N,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")
    n, height, width, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska" if codec == "ffv1" else "mp4") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = padded.shape[2], padded.shape[1]
        stream.pix_fmt = "yuv420p"
        # One thread: this runs inside data-loader workers, which already use every core between them.
        stream.options = {**_encoder_options(codec, crf, preset), "threads": "1"}
        for i, img in enumerate(padded):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        out = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(out) != n:
        raise VsrError(f"{codec} round trip returned {len(out)} of {n} frames")
    return np.ascontiguousarray(np.stack(out)[:, :height, :width])


class VideoWriter:
    """Encode RGB frames with their pts to a temp file beside ``path``; rename it into place only on success.

    Use as a context manager: leaving the block normally finishes the file (flush encoder, copy the rest of the
    audio, rename); an exception deletes the temp file and leaves ``path`` as it was. ``close()`` / ``abort()``
    do the same by hand.

    Frames whose width/height are odd while the pixel format subsamples chroma (yuv420p needs even sizes) are
    padded by one pixel, repeating the edge; the writer then says so in ``warnings`` (a list of one-line
    strings for the caller to show) and ``padded`` ((right, bottom) pixels added).
    """

    def __init__(self, path, *, width: int, height: int, time_base: Fraction, fps: Fraction | None,
                 source=None, codec: str = "libx264", crf: int | None = None, preset: str | None = None,
                 pix_fmt: str | None = None, copy_audio: bool = True, overwrite: bool = False,
                 color_range: str | None = None, color_space: str | None = None, color_primaries: str | None = None,
                 color_trc: str | None = None, rotation: int = 0, start: float | None = None,
                 end: float | None = None, options: dict[str, str] | None = None):
        """Check the options, create the temp file and open the encoder (and the audio source).

        Args:
            path: Target file; its extension picks the container.
            width: Frame width of what will be written.
            height: Frame height.
            time_base: Time base of the pts passed to :meth:`write` (the input video stream's).
            fps: Nominal frame rate (the input's average rate); a rate-control hint, pts decide timing.
            source: File whose audio streams are copied packet for packet (usually the input video).
            codec: Video encoder, one of :func:`available_codecs`.
            crf: Quality in the encoder's own scale (None: 18 for x264, 20 x265, 28 SVT-AV1, 19/21 NVENC);
                ffv1 is lossless and ignores it.
            preset: x264-style preset name (mapped for SVT-AV1 and NVENC); None for "medium".
            pix_fmt: Encoder pixel format; None for yuv420p (yuv444p for ffv1).
            copy_audio: Copy every audio stream of ``source``.
            overwrite: Replace an existing ``path``.
            color_range: "tv"/"pc"; None for "tv". Used for the RGB->YUV maths and tagged on the output.
            color_space: Matrix ("bt709", "smpte170m", ...); None for BT.709 from 720p up, else BT.601. Used for
                the maths and tagged.
            color_primaries: Tag only (no conversion), e.g. the input's.
            color_trc: Tag only (no conversion), e.g. the input's.
            rotation: Display rotation to tag, counter-clockwise degrees as :func:`probe` reports it.
            start: The ``start`` given to :func:`read_frames` for an excerpt: audio before the first written
                frame is dropped. None keeps it.
            end: The ``end`` given to :func:`read_frames`: audio from the end of the last written frame on is
                dropped. None keeps it. (The cut follows the frames actually written, so it matches them exactly.)
            options: Extra encoder options, passed to FFmpeg as they are.
        """
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        self.frames_written = 0
        self.warnings: list[str] = []
        self._closed = False
        self._last_pts: int | None = None
        self._first_time: Fraction | None = None
        fps = Fraction(fps).limit_denominator(1_000_000) if fps else None
        self._frame_step = 1 / (fps * self.time_base) if fps else None
        self._cut_start, self._cut_end = start is not None, end is not None
        if width < 1 or height < 1:
            raise VsrError(f"frame size must be positive, got {width}x{height}")
        self._check_paths(source, overwrite)
        _check_codec(codec)
        codec_options = {**_encoder_options(codec, crf, preset), **(options or {})}
        pix_fmt = pix_fmt or ("yuv444p" if codec == "ffv1" else "yuv420p")
        supported = [f.name for f in av.Codec(codec, "w").video_formats or ()]
        if supported and pix_fmt not in supported:
            raise VsrError(f"{codec} cannot encode pix_fmt {pix_fmt}; it takes {', '.join(supported[:12])}")
        fmt = av.VideoFormat(pix_fmt)
        self.padded = (width % 2 if fmt.chroma_width(3) < 3 else 0, height % 2 if fmt.chroma_height(3) < 3 else 0)
        if any(self.padded):
            self.warnings.append(f"odd frame size {width}x{height} padded to {width + self.padded[0]}x"
                                 f"{height + self.padded[1]} (edge pixels repeated; {pix_fmt} needs even sizes)")
        self.width, self.height = width, height
        out_w, out_h = width + self.padded[0], height + self.padded[1]
        self._pix_fmt = pix_fmt
        color_space = color_space or _default_space(out_w, out_h)
        color_range = color_range or "tv"
        self._sws = _sws_args(pix_fmt, color_space, color_range, out_w, out_h)

        self.temp_path = self._create_temp()
        temp = str(self.temp_path)
        self._out = self._source = None
        try:
            container_options = {}
            if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") and self.time_base.numerator == 1:
                # MP4/MOV would otherwise pick its own timescale (>= 10000) and renumber every pts.
                container_options["video_track_timescale"] = str(self.time_base.denominator)
            self._out = av.open(temp, "w", options=container_options)
            self._stream = self._out.add_stream(codec, rate=fps or 25, options=codec_options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = out_w, out_h, pix_fmt
            self._stream.time_base = self.time_base
            self._stream.codec_context.time_base = self.time_base
            ctx = self._stream.codec_context
            if self._sws:  # tag exactly what the conversion used, so players undo it the same way
                ctx.colorspace, ctx.color_range = COLOR_SPACES.get(color_space, 2), COLOR_RANGES[color_range]
            if color_primaries in COLOR_PRIMARIES:
                ctx.color_primaries = COLOR_PRIMARIES[color_primaries]
            if color_trc in COLOR_TRCS:
                ctx.color_trc = COLOR_TRCS[color_trc]
            if rotation % 360:
                self._stream.set_display_rotation(rotation % 360)
            self._audio_map, self._packets, self._held = {}, iter(()), None
            if source is not None and copy_audio:
                self._open_source(os.fspath(source))
        except BaseException as err:
            self.abort()
            if isinstance(err, VsrError):
                raise
            if isinstance(err, (av.FFmpegError, ValueError, OSError)):
                raise VsrError(f"cannot write {self.path}: {_error_text(err)}") from None
            raise

    def _create_temp(self) -> Path:
        # Not tempfile.mkstemp: its 0600 mode would end up on the renamed output; os.open applies the umask.
        for _ in range(100):
            temp = self.path.parent / f".{self.path.name}.partial-{secrets.token_hex(4)}{self.path.suffix}"
            try:
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return temp
            except FileExistsError:
                continue
            except OSError as err:
                raise VsrError(f"cannot write to folder {self.path.parent}: {_error_text(err)}") from None
        raise VsrError(f"cannot create a temporary file in {self.path.parent}")

    def _check_paths(self, source, overwrite: bool) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            raise VsrError(f"output folder does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise VsrError(f"cannot write to folder {parent}: permission denied")
        if self.path.is_dir():
            raise VsrError(f"output is a folder: {self.path}")
        if source is not None:
            same = Path(source).resolve() == self.path.resolve()
            if not same and self.path.exists() and os.path.exists(source):
                same = os.path.samefile(source, self.path)  # hard links and other spellings of one file
            if same:
                raise VsrError(f"output is the same file as the input: {self.path}")
        if self.path.exists() and not overwrite:
            raise VsrError(f"output file exists: {self.path} (use --overwrite to replace it)")

    def _open_source(self, source: str) -> None:
        self._source = _open_input(source)
        copied = []
        for stream in self._source.streams:
            if stream.type != "audio":
                stream.discard = av.stream.Discard.all  # let the demuxer skip video data it would read for nothing
                continue
            try:
                out = self._out.add_stream_from_template(stream)
            except ValueError as err:  # the output container cannot hold this codec (e.g. Opus in AVI)
                self.warnings.append(f"audio stream #{stream.index} ({stream.codec_context.name}) not copied: "
                                     f"{_error_text(err)}")
                continue
            for key in ("language", "title"):
                if key in stream.metadata:
                    out.metadata[key] = stream.metadata[key]
            out.disposition = stream.disposition
            self._audio_map[stream.index] = out
            copied.append(stream)
        # Packets are pulled lazily in the source's own order, so long audio is never held in memory.
        self._packets = self._source.demux(copied) if copied else iter(())

    def _mux_audio(self, until: Fraction | None, stop: Fraction | None = None) -> None:
        """Mux source audio packets timed at or before ``until`` seconds (all when None); drop those >= ``stop``.

        Packets wait in the source file until the video has caught up with them: memory stays flat for any length.
        """
        while True:
            try:
                packet = self._held if self._held is not None else next(self._packets, None)
            except av.FFmpegError as err:
                raise VsrError(f"cannot read audio from the source: {_error_text(err)}") from None
            self._held = None
            if packet is None:
                return
            if packet.dts is None or not packet.size:
                continue  # the demuxer's trailing flush packets carry no data
            t = packet.dts * packet.time_base
            if until is not None and t > until:
                self._held = packet
                return
            if (self._cut_start and t < self._first_time) or (stop is not None and t >= stop):
                continue
            packet.stream = self._audio_map[packet.stream.index]
            self._out.mux(packet)

    def write(self, frames: np.ndarray, pts: Sequence[int]) -> None:
        """Encode frames with the given pts (strictly increasing, in ``time_base``).

        Args:
            frames: (N,H,W,3) uint8 RGB (or uint16 RGB48 for high bit depth), H and W as given to the writer.
            pts: One pts per frame.
        """
        if self._closed:
            raise VsrError("the video writer is already closed")
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or len(frames) != len(pts):
            raise VsrError(f"writer expected {len(pts)} frames of {self.height}x{self.width}x3, got {frames.shape}")
        if frames.dtype not in (np.uint8, np.uint16):
            raise VsrError(f"writer expected uint8 or uint16 frames, got {frames.dtype}")
        if any(self.padded):
            frames = np.pad(frames, ((0, 0), (0, self.padded[1]), (0, self.padded[0]), (0, 0)), mode="edge")
        rgb_format = "rgb24" if frames.dtype == np.uint8 else "rgb48le"
        for img, p in zip(frames, pts):
            p = int(p)
            if self._last_pts is not None and p <= self._last_pts:
                raise VsrError(f"frame pts must increase: {p} after {self._last_pts}")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=rgb_format)
            frame = frame.reformat(format=self._pix_fmt, dst_colorspace=self._sws.get("matrix"),
                                   dst_color_range=self._sws.get("range"))
            frame.pts, frame.time_base = p, self.time_base
            try:
                self._out.mux(self._stream.encode(frame))
            except (av.FFmpegError, OSError) as err:  # e.g. a full disk, or a hardware encoder out of sessions
                raise VsrError(f"cannot write {self.path}: {_error_text(err)}") from None
            if self._first_time is None:
                self._first_time = p * self.time_base
            if self._last_pts is not None and self._frame_step is None:
                self._frame_step = Fraction(p - self._last_pts)
            self._last_pts = p
            self.frames_written += 1
            self._mux_audio(until=p * self.time_base)

    def close(self) -> None:
        """Finish the file: flush the encoder, copy the remaining audio, rename the temp file onto ``path``."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise VsrError(f"no frames were written to {self.path}")
            self._out.mux(self._stream.encode(None))
            end = (self._last_pts + (self._frame_step or 1)) * self.time_base
            self._mux_audio(until=None, stop=end if self._cut_end else None)
            self._out.close()
            os.replace(self.temp_path, self.path)
        except BaseException as err:
            self.abort()
            if isinstance(err, (av.FFmpegError, OSError)):
                raise VsrError(f"cannot write {self.path}: {_error_text(err)}") from None
            raise
        finally:
            if self._source is not None:
                self._source.close()
        self._closed = True

    def abort(self) -> None:
        """Drop the partial output: close everything and delete the temp file; ``path`` is not touched."""
        self._closed = True
        for container in (self._out, self._source):
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError):
                    pass  # the file is being thrown away; a failing trailer write does not matter
        self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
