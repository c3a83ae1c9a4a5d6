"""Everything in a source file besides the video vsr re-encodes: audio tracks, subtitles, attachments (MKV fonts),
data streams, chapters and tags, carried into an output file packet for packet.

What the output container cannot hold is converted when a lossless conversion exists (text subtitles into the
container's own text format, e.g. ASS -> mov_text for MP4) or left out, each with one warning line naming the
stream. Packets are pulled from the source lazily, as the video catches up with them, so memory stays flat.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av

from vsr.errors import VsrError
from vsr.video.probe import error_text, main_video_stream, open_input, stream_codec_name

# The text subtitle format each container holds, for converting one it cannot (FFmpeg's mp4/mov muxers report no
# default subtitle codec, but mov_text is the one they take).
SUBTITLE_TARGETS = {"mp4": "mov_text", "mov": "mov_text", "ipod": "mov_text", "3gp": "mov_text",
                    "matroska": "ass", "webm": "webvtt"}
# Muxers that write chapters; the others drop them without a word, so vsr says it instead.
CHAPTER_FORMATS = {"matroska", "webm", "mp4", "mov", "ipod", "3gp", "3g2", "ismv", "f4v", "ogg"}
# Only Matroska stores attachments (the WebM muxer accepts them and writes nothing).
ATTACHMENT_FORMATS = {"matroska"}
# Audio codecs whose copies into AVI need an encoder's parameters (see StreamCopier._add_copy), with that encoder.
_AVI_AUDIO_HEADERS = {"mp3": "libmp3lame", "ac3": "ac3"}
# Tags a muxer writes itself, or that describe the source file (Matroska's per-track statistics), not copied.
_DROPPED_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "vendor_id", "duration", "bps",
                 "number_of_frames", "number_of_bytes", "_statistics_writing_app", "_statistics_writing_date_utc",
                 "_statistics_tags"}


def copy_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` without the ones :data:`_DROPPED_TAGS` names (Matroska may suffix them with a language)."""
    kept = {k: v for k, v in tags.items() if k.lower().split("-")[0] not in _DROPPED_TAGS}
    if "name" in kept and "title" not in kept:
        kept["title"] = kept.pop("name")  # MP4 reads a track's title back as "name" but writes it from "title"
    return kept


def _set_tags(stream, tags: dict[str, str]) -> None:
    # Stream.metadata is a dict read when the header is written; it cannot be assigned, only filled.
    stream.metadata.clear()
    stream.metadata.update(copy_tags(tags))


def describe(stream) -> str:
    """'audio stream #1 (aac, eng)': how warnings name a source stream."""
    if stream.type == "attachment":
        details = [stream.metadata.get("filename") or "unnamed", stream.metadata.get("mimetype") or "no mimetype"]
    else:
        language = stream.metadata.get("language")
        details = [stream_codec_name(stream), language if language != "und" else None]
    return f"{stream.type} stream #{stream.index} ({', '.join(d for d in details if d)})"


def _fits(format_name: str, template) -> str | None:
    """None if a container of ``format_name`` can hold a copy of ``template``, else why not.

    Checked by writing a header into memory: some muxers accept a stream and only fail when the header is written,
    which in the real file would be after the first frames were encoded.
    """
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as trial:
            trial.add_stream_from_template(template, opaque=True)
            trial.start_encoding()
    except ValueError:  # PyAV asked the muxer first: it does not take this codec
        return f"{format_name} cannot hold {stream_codec_name(template)}"
    except (av.FFmpegError, OSError) as err:
        return f"the {format_name} muxer refused it ({error_text(err)})"
    return None


class StreamCopier:
    """Adds every stream of ``source`` other than its main video to ``out``, and muxes their packets on demand.

    Create it before the output's header is written (that is, before the first packet is muxed): streams,
    chapters and container tags are fixed by then.

    Attributes:
        warnings: One line per stream not copied or converted, and for chapters the output cannot hold.
        source: The open source container (closed by :meth:`close`).
        video: The source's main video stream (its tags go to the re-encoded video, see :meth:`tag_video`).
    """

    def __init__(self, out, source, *, audio: bool = True, subtitles: bool = True,
                 span: tuple[float | None, float | None] = (None, None), negative_times: bool = True,
                 warnings: list[str] | None = None, rebase: bool = False):
        """Open ``source`` and add its streams, chapters and tags to ``out``.

        Args:
            out: The output container (nothing muxed yet).
            source: Path of the file to copy from.
            audio: Copy audio streams (False drops them on purpose, without a warning).
            subtitles: Copy subtitle streams (False drops them on purpose).
            span: (start, end) seconds from the source video's first frame, as given to ``read_frames``; chapters
                outside it are dropped and the rest clipped to it. Packets are cut by :meth:`mux`'s arguments.
            negative_times: Whether ``out`` can store times before 0. If not, packets there are dropped (with a
                warning): its muxer would otherwise move every stream, the video included, later.
            warnings: The list to append warnings to (also later ones, from :meth:`mux`); None for a new one.
            rebase: Chapters start from ``span``'s start (an excerpt whose streams start at 0; :meth:`mux`
                moves the packets by its ``shift``).
        """
        self.warnings: list[str] = warnings if warnings is not None else []
        self._negative_times = negative_times
        self._out = out
        self._format = out.format.name
        self._map: dict[int, av.stream.Stream] = {}
        self._converters: dict[int, tuple] = {}  # source index -> (decoder, encoder) for converted subtitles
        self._held = None
        self._untimed: set[int] = set()
        self._early: set[int] = set()
        self._gap_fillers: set[int] = set()
        self.source = open_input(source)
        try:
            self.video = main_video_stream(self.source, source)
            for stream in self.source.streams:
                if stream is self.video or stream.discard == av.stream.Discard.all:
                    # The demuxer already discards streams it uses internally (MP4's chapter text track).
                    stream.discard = av.stream.Discard.all
                    continue
                if not self._add(stream, audio, subtitles):
                    stream.discard = av.stream.Discard.all  # the demuxer then skips its data
            self._copy_chapters(span, rebase)
            out.metadata.update(copy_tags(self.source.metadata))
            copied = [s for s in self.source.streams if s.index in self._map and s.type != "attachment"]
            # One lazy demux over the copied streams, in file order: nothing is read ahead of the video.
            self._packets = self.source.demux(copied) if copied else iter(())
        except BaseException:
            self.source.close()
            raise

    def _add(self, stream, audio: bool, subtitles: bool) -> bool:
        kind = stream.type
        if (kind == "audio" and not audio) or (kind == "subtitle" and not subtitles):
            return False
        if kind == "attachment":
            if self._format not in ATTACHMENT_FORMATS:
                self.warnings.append(f"{describe(stream)} not copied: {self._format} cannot hold attachments")
                return False
            why = None
        elif kind in ("video", "audio", "subtitle", "data"):
            why = _fits(self._format, stream)
        else:
            why = f"vsr does not copy {kind} streams"
        if why is not None:
            if kind == "subtitle":
                why = self._add_converted(stream, why)
            if why is not None:
                self.warnings.append(f"{describe(stream)} not copied: {why}")
                return False
            return True
        copy = self._add_copy(stream)
        _set_tags(copy, stream.metadata)
        copy.disposition = stream.disposition
        self._map[stream.index] = copy
        if stream_codec_name(stream) == "mov_text":
            # MP4 fills the time between subtitles with empty samples. Copied as they are, the muxer (which
            # writes its own) adds zero-length ones beside them when other streams are interleaved; left to
            # the muxer, the gaps come out exactly as they were.
            self._gap_fillers.add(stream.index)
        return True

    def _add_copy(self, stream):
        encoder = _AVI_AUDIO_HEADERS.get(stream_codec_name(stream)) if self._format == "avi" else None
        if encoder is None or encoder not in av.codecs_available:
            return self._out.add_stream_from_template(stream, opaque=True)
        # Copied as they are, MP3/AC3 parameters carry the block size the AVI demuxer reports, and the AVI muxer
        # then indexes the audio as constant-size blocks: every packet time reads back wrong. FFmpeg's stream copy
        # clears block_align for them; PyAV cannot set it, so the stream gets the parameters of a freshly opened
        # encoder of the same rate and layout instead (what a direct encode writes). It encodes nothing.
        ctx = stream.codec_context
        copy = self._out.add_stream(encoder, rate=ctx.sample_rate)
        copy.layout, copy.bit_rate, copy.time_base = ctx.layout, ctx.bit_rate, stream.time_base
        return copy

    def _add_converted(self, stream, why: str) -> str | None:
        """Add a text subtitle stream re-encoded to the output's text format; else say why it is not copied."""
        target = SUBTITLE_TARGETS.get(self._format)
        decoder = stream.codec_context
        if target is None or decoder is None or not decoder.codec.text_sub:
            return why
        try:
            decoder.open(strict=False)  # fills in the ASS header (styles) that text encoders start from
            copy = self._out.add_stream(target)
        except (av.FFmpegError, ValueError) as err:
            return f"{why}; conversion to {target} failed ({error_text(err)})"
        copy.codec_context.subtitle_header = decoder.subtitle_header
        copy.time_base = stream.time_base
        _set_tags(copy, stream.metadata)
        copy.disposition = stream.disposition
        self._map[stream.index] = copy
        self._converters[stream.index] = (decoder, copy.codec_context)
        self.warnings.append(f"{describe(stream)} converted to {target}: {self._format} cannot hold "
                             f"{stream_codec_name(stream)} (the text is kept, styling as far as {target} has it)")
        return None

    def _copy_chapters(self, span: tuple[float | None, float | None], rebase: bool) -> None:
        chapters = self.source.chapters()
        if not chapters:
            return
        if self._format not in CHAPTER_FORMATS:
            self.warnings.append(f"{len(chapters)} chapters not kept: {self._format} cannot hold chapters")
            return
        origin = (self.video.start_time or 0) * (self.video.time_base or 0)
        lo = origin + Fraction(span[0]) if span[0] is not None else None
        hi = origin + Fraction(span[1]) if span[1] is not None else None
        kept = []
        for chapter in chapters:
            tb = chapter["time_base"]
            start, end = chapter["start"], chapter["end"]
            if (lo is not None and end * tb <= lo) or (hi is not None and start * tb >= hi):
                continue
            if lo is not None:
                start = max(start, round(lo / tb))
            if hi is not None:
                end = min(end, round(hi / tb))
            if rebase:
                shift = round((lo if lo is not None else origin) / tb)
                start, end = start - shift, end - shift
            kept.append({**chapter, "start": start, "end": end})
        self._out.set_chapters(kept)

    def tag_video(self, stream) -> None:
        """Give the re-encoded video stream the source video's tags (language, title) and disposition."""
        _set_tags(stream, self.video.metadata)
        stream.disposition = self.video.disposition

    def _next(self):
        if self._held is not None:
            packet, self._held = self._held, None
            return packet
        while True:
            try:
                packet = next(self._packets, None)
            except av.FFmpegError as err:
                raise VsrError(f"cannot read {self.source.name}: {error_text(err)}") from None
            if packet is None or packet.size:  # size 0: the demuxer's end-of-stream flush packets
                return packet

    def mux(self, until: Fraction | None, first: Fraction | None = None, stop: Fraction | None = None,
            shift: Fraction = Fraction(0)) -> None:
        """Mux the packets timed at or before ``until`` seconds (all that are left when None).

        Args:
            until: Stop before the first packet later than this (it waits in the source for the next call).
            first: Drop packets before this time (an excerpt's first frame). Audio is cut at the packet boundary
                closest to it (a packet is kept when at least half of it is at or after ``first``: within half a
                packet, 10.7 ms for 1024-sample AAC at 48 kHz); a subtitle is kept if it is still showing then.
            stop: Drop packets at or after this time (an excerpt's end); audio again at the closest boundary.
            shift: Seconds to move every packet earlier (an excerpt rebased to start at 0); all times above are
                on the source's clock.
        """
        while True:
            packet = self._next()
            if packet is None:
                return
            index = packet.stream.index
            if packet.dts is None:
                if packet.pts is None:
                    if index not in self._untimed:
                        self._untimed.add(index)
                        self.warnings.append(f"{describe(packet.stream)}: packets without a timestamp dropped")
                    continue
                packet.dts = packet.pts  # sparse streams (subtitles, data) may carry a pts only
            t = packet.dts * packet.time_base
            if until is not None and t > until:
                self._held = packet
                return
            half = (packet.duration or 0) * packet.time_base / 2 if packet.stream.type == "audio" else 0
            if first is not None:
                shown_until = t + (packet.duration or 0) * packet.time_base
                if (shown_until <= first) if packet.stream.type == "subtitle" else (t + half < first):
                    continue
            if stop is not None and t + half >= stop:
                continue
            t -= shift
            if t < 0 and not self._negative_times:
                if index not in self._early:
                    self._early.add(index)
                    self.warnings.append(f"{describe(packet.stream)}: packets before 0s dropped ({self._format} "
                                         "cannot store times before 0)")
                continue
            if index in self._gap_fillers and packet.size == 2 and bytes(packet) == b"\0\0":
                continue  # an empty mov_text sample: the muxer writes it again (see _add)
            if index in self._converters:
                packet = self._convert(packet)
                if packet is None:
                    continue
            else:
                packet.stream = self._map[index]
            if shift:
                ticks = round(shift / packet.time_base)
                packet.pts = packet.pts - ticks if packet.pts is not None else None
                packet.dts -= ticks
                if packet.stream.type == "subtitle" and packet.dts < 0:
                    # Still showing when the excerpt starts: shown from 0 for the rest of its time.
                    if packet.duration:
                        packet.duration = max(1, packet.duration + packet.dts)
                    packet.pts = packet.dts = 0
            self._out.mux(packet)

    def _convert(self, packet):
        """Re-encode one text subtitle packet; the timing is the source packet's, untouched."""
        decoder, encoder = self._converters[packet.stream.index]
        try:
            subtitle = decoder.decode2(packet)
            if subtitle is None or not len(subtitle):
                return None  # an empty sample (MP4 fills gaps between subtitles with them; its muxer adds its own)
            converted = encoder.encode_subtitle(subtitle)
        except (av.FFmpegError, ValueError) as err:
            raise VsrError(f"cannot convert {describe(packet.stream)}: {error_text(err)}") from None
        converted.pts, converted.dts, converted.time_base = packet.pts, packet.dts, packet.time_base
        if packet.duration:
            converted.duration = packet.duration
        else:  # the decoder's display time is in milliseconds
            converted.duration = round(Fraction(subtitle.end_display_time, 1000) / packet.time_base)
        converted.stream = self._map[packet.stream.index]
        return converted

    def close(self) -> None:
        self.source.close()
