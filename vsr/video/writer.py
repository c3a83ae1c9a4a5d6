"""Encoding: :class:`VideoWriter` encodes RGB frames with their pts into a temp file beside the target, carries over
every other stream of the source (see :mod:`vsr.video.streams`), checks the result and renames it into place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr.atomic import create_temp
from vsr.errors import VsrError
from vsr.video.codecs import check_codec, default_codec, default_pix_fmt, encoder_options, output_pix_fmt
from vsr.video.colour import COLOR_SPACES, SWS_QUALITY, default_space, sws_args, tag_stream
from vsr.video.container import (
    SHORT_ENCODE,
    VideoSummary,
    check_output_path,
    check_summary,
    close_quietly,
    container_options,
    exact_times,
    fix_short_dts,
    summarize,
    tag_hevc_for_apple,
)
from vsr.video.probe import error_text, probe
from vsr.video.streams import StreamCopier
from vsr.video.tags import add_tags, tag_options


@dataclass(frozen=True)
class FrameSettings:
    """How the video of an output is encoded: what every writer of one run (the file, or each resume segment) shares.

    ``container`` is the target's extension, whose encoder rules apply also to segments written as MP4 first
    (no B-frames for AVI).
    """

    width: int
    height: int
    time_base: Fraction
    fps: Fraction | None
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    sample_aspect_ratio: Fraction | None = None
    color_range: str | None = None
    color_space: str | None = None
    color_primaries: str | None = None
    color_trc: str | None = None
    container: str | None = None
    options: dict[str, str] | None = None  # extra encoder options (-e KEY=VALUE)
    tags: dict[str, str] | None = None  # container tags added to the source's (vsr's provenance)

    def as_kwargs(self) -> dict:
        """Keyword arguments for :class:`VideoWriter`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

class VideoWriter:
    """Encode RGB frames with their pts to a temp file beside ``path``; rename it into place only on success.

    Use as a context manager: leaving the block normally finishes the file (flush the encoder, copy the rest of the
    other streams, check the frames, rename); an exception deletes the temp file and leaves ``path`` as it was.
    ``close()`` / ``abort()`` do the same by hand.

    With a ``source``, every other stream of it is carried over (see :class:`~vsr.video.streams.StreamCopier`):
    audio and subtitle tracks, attachments, data streams, chapters, container and stream tags, dispositions.

    Frames whose width/height are odd while the pixel format subsamples chroma (yuv420p needs even sizes) are
    padded by one pixel, repeating the edge (``padded`` is (right, bottom) pixels added).

    Attributes:
        warnings: One line each for what was not kept as it was: streams left out or converted, chapters the
            container cannot hold, padding, a bit depth the encoder cannot keep.
        frames_written: Frames encoded so far.
        pix_fmt: The encoder's pixel format.
        summary: After :meth:`close`: the finished file's :class:`VideoSummary` (checked against what was
            written, as frames in == frames out and first/last pts equal).
    """

    def __init__(self, path, *, width: int, height: int, time_base: Fraction, fps: Fraction | None,
                 source=None, codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 pix_fmt: str | None = None, copy_audio: bool = True, copy_subtitles: bool = True,
                 overwrite: bool = False, color_range: str | None = None, color_space: str | None = None,
                 color_primaries: str | None = None, color_trc: str | None = None, rotation: int = 0,
                 start: float | None = None, end: float | None = None, options: dict[str, str] | None = None,
                 verify: bool = True, sample_aspect_ratio: Fraction | None = None, rebase: bool = False,
                 container: str | None = None, check: Callable[[Path], None] | None = None,
                 rebase_at: int | None = None, tags: dict[str, str] | None = None):
        """Check the options, create the temp file and open the encoder (and the source).

        Args:
            path: Target file; its extension picks the container.
            width: Frame width of what will be written.
            height: Frame height.
            time_base: Time base of the pts passed to :meth:`write` (the input video stream's).
            fps: Nominal frame rate (the input's average rate); a rate-control hint, pts decide timing.
            source: File whose other streams are copied (usually the input video); None writes video only.
            codec: Video encoder, one of :func:`available_codecs` or another FFmpeg video encoder; None for the
                output container's default (:func:`~vsr.video.codecs.default_codec`).
            crf: Quality in the encoder's own scale (None: 18 for x264, 20 x265, 28 SVT-AV1, 19/21 NVENC);
                ffv1 is lossless and ignores it.
            preset: x264-style preset name (mapped for SVT-AV1 and NVENC); None for "medium".
            pix_fmt: Encoder pixel format. None: with a ``source``, :func:`output_pix_fmt` (keeps a 10-bit
                input 10-bit where the encoder can); without, yuv420p (yuv444p for ffv1).
            copy_audio: Copy the audio streams of ``source``.
            copy_subtitles: Copy (or convert) the subtitle streams of ``source``.
            overwrite: Replace an existing ``path``.
            color_range: "tv"/"pc"; None for "tv". Used for the RGB->YUV maths and tagged on the output.
            color_space: Matrix ("bt709", "smpte170m", ...); None for BT.709 from 720p up, else BT.601. Used for
                the maths and tagged.
            color_primaries: Tag only (no conversion), e.g. the input's.
            color_trc: Tag only (no conversion), e.g. the input's.
            rotation: Display rotation to tag, counter-clockwise degrees as :func:`probe` reports it.
            start: The ``start`` given to :func:`read_frames` for an excerpt: other streams' packets before the
                first written frame are dropped, chapters cut. None keeps them.
            end: The ``end`` given to :func:`read_frames`: packets from the end of the last written frame on are
                dropped, chapters cut. None keeps them. (Packets are cut where the frames actually written end.)
            options: Extra encoder options, passed to FFmpeg as they are.
            verify: On :meth:`close`, read the file back and check frame count and first/last pts.
            sample_aspect_ratio: Pixel aspect to tag (the input's: both axes are scaled alike, so the display
                aspect stays); None for square pixels.
            rebase: Start the output's clock at the first frame written (an excerpt starts at 0, as ``ffmpeg
                -ss`` writes it): every stream, chapters included, moves earlier by that frame's time, so the
                offsets between streams stay as in the source. pts passed to :meth:`write` and reported by
                :attr:`first_pts`/:attr:`last_pts` stay on the source's clock.
            container: The extension whose encoder rules apply (see :func:`~vsr.video.codecs.encoder_options`);
                None for ``path``'s own.
            rebase_at: With ``rebase``, the pts that becomes 0 (the excerpt's first frame, as the source's index
                lists it) instead of the first frame written, so a missing first frame shows as one.
            check: Called on :meth:`close` with the finished temp file before it is renamed onto ``path``; raises
                VsrError to discard it (e.g. :func:`~vsr.video.index.check_times` against the source's index).
            tags: Container tags added after the source's (see :mod:`~vsr.video.tags`).
        """
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        self.frames_written = 0
        self.warnings: list[str] = []
        self.summary: VideoSummary | None = None
        self._verify = verify
        self._check = check
        self._rebase_at = rebase_at
        self._closed = False
        self._last_pts: int | None = None
        self._first_pts: int | None = None
        self._held_video: list | None = []  # the first encoded packets, see _mux_video
        fps = Fraction(fps).limit_denominator(1_000_000) if fps else None
        self._frame_step = 1 / (fps * self.time_base) if fps else None
        self._cut_start, self._cut_end = start is not None, end is not None
        self._rebase = rebase
        self._shift = 0  # ticks subtracted from every pts written (the first frame's, with rebase)
        if width < 1 or height < 1:
            raise VsrError(f"frame size must be positive, got {width}x{height}")
        check_output_path(self.path, source, overwrite)
        codec = codec or default_codec(self.path)
        check_codec(codec)
        self.codec = codec
        codec_options = {**encoder_options(codec, crf, preset, container or self.path.suffix), **(options or {})}
        if pix_fmt is None and source is not None:
            pix_fmt = output_pix_fmt(probe(source), codec, None, self.warnings)
        pix_fmt = pix_fmt or default_pix_fmt(codec)
        supported = [f.name for f in av.Codec(codec, "w").video_formats or ()]
        if supported and pix_fmt not in supported:
            raise VsrError(f"{codec} cannot encode pix_fmt {pix_fmt}; it takes {', '.join(supported[:12])}")
        self.pix_fmt = pix_fmt
        fmt = av.VideoFormat(pix_fmt)
        self.padded = (width % 2 if fmt.chroma_width(3) < 3 else 0, height % 2 if fmt.chroma_height(3) < 3 else 0)
        if any(self.padded):
            self.warnings.append(f"odd frame size {width}x{height} padded to {width + self.padded[0]}x"
                                 f"{height + self.padded[1]} (edge pixels repeated; {pix_fmt} needs even sizes)")
        self.width, self.height = width, height
        out_w, out_h = width + self.padded[0], height + self.padded[1]
        color_space = color_space or default_space(out_w, out_h)
        color_range = color_range or "tv"
        self._sws = sws_args(pix_fmt, color_space, color_range, out_w, out_h)

        self.temp_path = create_temp(self.path)
        self._out = self._copier = None
        try:
            self._out = av.open(str(self.temp_path), "w", container_options={
                **container_options(self.path, self.time_base), **tag_options(self.path, tags)})
            self._stream = self._out.add_stream(codec, rate=fps or 25, options=codec_options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = out_w, out_h, pix_fmt
            self._stream.time_base = self.time_base
            # MPEG-1/2 store a frame rate from a fixed list and MPEG-4 part 2 a clock under 65536 Hz: they count
            # in frames (PyAV rebases each frame's pts); the others get the input's own clock.
            frame_clock = codec in ("mpeg2video", "mpeg1video", "mpeg4") and fps
            self._stream.codec_context.time_base = 1 / fps.limit_denominator(65535) if frame_clock else self.time_base
            # Counting in frames from the first frame keeps a start off the frame grid (a DVD at 0.54 s, 25 fps)
            # exact: the first frame's time is added back to each packet (see _mux_video).
            self._clock_offset = 0 if frame_clock else None
            if sample_aspect_ratio and sample_aspect_ratio != 1:
                # In the bitstream (H.264 VUI, MPEG-2 sequence header), from which the muxer also takes it.
                self._stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
            # Tag exactly what the conversion used (RGB formats have no matrix), so players undo it the same way.
            tag_stream(self._stream, color_range=color_range if self._sws else None,
                       color_space=color_space if self._sws and color_space in COLOR_SPACES else None,
                       color_primaries=color_primaries, color_trc=color_trc)
            if rotation % 360:
                self._stream.set_display_rotation(rotation % 360)
            tag_hevc_for_apple(self._stream, self.path)
            if source is not None:
                self._copier = StreamCopier(self._out, os.fspath(source), audio=copy_audio,
                                            subtitles=copy_subtitles, span=(start, end),
                                            negative_times=exact_times(self.path), warnings=self.warnings,
                                            rebase=rebase)
                self._copier.tag_video(self._stream)
            add_tags(self._out, self.path, tags, self.warnings)
        except BaseException as err:
            self.abort()
            if isinstance(err, VsrError):
                raise
            if isinstance(err, (av.FFmpegError, ValueError, OSError)):
                raise VsrError(f"cannot write {self.path}: {error_text(err)}") from None
            raise

    @property
    def last_pts(self) -> int | None:
        """The pts (in ``time_base``) of the last frame written; None before the first."""
        return self._last_pts

    @property
    def first_pts(self) -> int | None:
        """The pts of the first frame written; None before it."""
        return self._first_pts

    def _mux_video(self, packets, last: bool = False) -> None:
        """Mux encoded packets; the first ones wait until the encode is past :data:`SHORT_ENCODE` frames."""
        if self._clock_offset:
            stream_tb = self._stream.time_base
            for packet in packets:
                for name in ("pts", "dts"):
                    value = getattr(packet, name)
                    if value is not None:
                        setattr(packet, name, round((value * packet.time_base + self._clock_offset) / stream_tb))
                packet.time_base = stream_tb
        if self._held_video is None:
            self._out.mux(packets)
            return
        self._held_video += packets
        if last:
            fix_short_dts(self._held_video)
        if last or self.frames_written > SHORT_ENCODE:
            packets, self._held_video = self._held_video, None
            self._out.mux(packets)

    def _mux_others(self, until: Fraction | None, stop: Fraction | None = None) -> None:
        if self._copier is None:
            return
        first = self._first_pts * self.time_base if self._cut_start else None
        self._copier.mux(until, first=first, stop=stop, shift=self._shift * self.time_base)

    def write(self, frames: np.ndarray, pts: Sequence[int]) -> None:
        """Encode frames with the given pts (strictly increasing, in ``time_base``).

        Args:
            frames: (N,H,W,3) uint8 RGB, or uint16 RGB using the full 0..65535 range (what ``read_frames(depth=16)``
                gives: keeps 10-bit precision); H and W as given to the writer. Either goes into any pix_fmt.
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
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self._sws.get("matrix"),
                                   dst_color_range=self._sws.get("range"), interpolation=SWS_QUALITY)
            if self._first_pts is None:
                self._first_pts = p
                self._shift = (p if self._rebase_at is None else self._rebase_at) if self._rebase else 0
            frame.pts, frame.time_base = p - self._shift, self.time_base
            if self._clock_offset is not None:
                if self.frames_written == 0:
                    self._clock_offset = frame.pts * self.time_base  # seconds, added back to the packets
                frame.pts -= round(self._clock_offset / self.time_base)
            try:
                packets = self._stream.encode(frame)
                if self._last_pts is not None and self._frame_step is None:
                    self._frame_step = Fraction(p - self._last_pts)
                self._last_pts = p
                self.frames_written += 1
                self._mux_video(packets)
                self._mux_others(until=p * self.time_base)
            except (av.FFmpegError, OSError) as err:  # e.g. a full disk, or a hardware encoder out of sessions
                raise VsrError(f"cannot write {self.path}: {error_text(err)}") from None

    def close(self) -> None:
        """Finish the file: flush the encoder, copy what is left of the other streams, check, rename onto ``path``."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise VsrError(f"no frames were written to {self.path}")
            self._mux_video(self._stream.encode(None), last=True)
            end = (self._last_pts + (self._frame_step or 1)) * self.time_base
            self._mux_others(until=None, stop=end if self._cut_end else None)
            self._out.close()
            if self._copier is not None:
                self._copier.close()
            if self._verify:
                self.summary = summarize(self.temp_path)
                check_summary(self.summary, self.path, frames=self.frames_written,
                              first_pts=self._first_pts - self._shift, last_pts=self._last_pts - self._shift,
                              time_base=self.time_base, exact=exact_times(self.path))
            if self._check is not None:
                self._check(self.temp_path)
            os.replace(self.temp_path, self.path)
        except BaseException as err:
            self.abort()
            if isinstance(err, (av.FFmpegError, OSError)):
                raise VsrError(f"cannot write {self.path}: {error_text(err)}") from None
            raise
        self._closed = True

    def abort(self) -> None:
        """Drop the partial output: close everything and delete the temp file; ``path`` is not touched."""
        self._closed = True
        close_quietly(self._out, self._copier.source if self._copier is not None else None)
        self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
