"""Shared test helpers: small real clips rendered with PyAV (H.264 video + a real sine audio track; optionally more
audio tracks, subtitles, an attached font, chapters, tags, a KLV data stream, a video start offset, audio priming
before 0, rotation, colour tags, 10-bit or any picture), and readers for comparing a source with an output.

Other test files use them in one of two ways::

    from conftest import make_clip, other_streams, video_times   # plain functions, any path

    def test_x(clip_mp4, clip_vfr, clip_factory): ...   # fixtures, files live in tmp_path
        path = clip_factory("odd.mkv", size=(63, 47), audio_codec="libopus")
"""

from __future__ import annotations

import importlib.util
import math
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.subtitles.subtitle import SubtitleSet

# Audio sample rate per codec: Opus only runs at 48 kHz; the rest get a small rate to keep clips tiny.
_AUDIO_RATE = {"libopus": 48000, "opus": 48000}
_DEFAULT_AUDIO_RATE = 22050
# FFmpeg's AVColorSpace / AVColorRange codes and the swscale matrix for the tags make_clip accepts.
_COLOR_SPACE_CODES = {"bt709": (1, "ITU709"), "bt470bg": (5, "ITU601"), "smpte170m": (6, "ITU601"),
                      "bt2020nc": (9, "BT2020")}
_COLOR_RANGE_CODES = {"tv": (1, "MPEG"), "pc": (2, "JPEG")}
# A minimal ASS header: the ass and mov_text encoders both need one to know the "Default" style.
ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Tiny Test,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""  # (a backslash-newline inside the literal joins the Format line, as ASS wants it on one line)
# Not a real font (a test only needs the bytes back); the mimetype is the one Matroska uses for TrueType fonts.
FONT_NAME, FONT_MIMETYPE = "TinyTest.ttf", "application/x-truetype-font"
FONT_DATA = b"\x00\x01\x00\x00" + bytes(range(256)) * 2
AUDIO_LANGUAGES = ("eng", "fra", "deu", "spa")
# Irregular frame durations (in ms) cycled through by vfr=True clips; deliberately not a multiple of any rate.
_VFR_DURATIONS_MS = (40, 40, 120, 33, 67, 250, 17, 83)


def load_script(name: str):
    """A script of ``scripts/`` as a module (they are run, not installed), e.g. ``load_script("footage_benchmark")``."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_frame(index: int, width: int, height: int) -> np.ndarray:
    """The RGB picture of frame ``index`` of a generated clip: a moving gradient, a bar and a box.

    Every frame differs from its neighbours, and the picture has edges and smooth areas so that
    codecs and upscalers have structure to work on.

    Returns:
        (height, width, 3) uint8 RGB array.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index * 0.35
    r = 127.5 + 127.5 * np.sin(x / max(width, 1) * 2 * math.pi + t)
    g = 127.5 + 127.5 * np.sin(y / max(height, 1) * 2 * math.pi - t)
    b = 127.5 + 127.5 * np.cos((x + y) / max(width + height, 1) * 4 * math.pi + 2 * t)
    img = np.stack([r, g, b], axis=-1)
    # A white vertical bar sweeping right and a dark box moving down: sharp edges that move.
    bar_x = (index * 5) % max(width, 1)
    img[:, bar_x : bar_x + max(width // 16, 1)] = 255
    box_y = (index * 3) % max(height - height // 4, 1)
    img[box_y : box_y + height // 4, width // 3 : width // 3 + width // 4] = (20, 30, 40)
    return np.ascontiguousarray(img.clip(0, 255).astype(np.uint8))


def clip_pts(frames: int, fps: int, vfr: bool) -> tuple[list[int], Fraction]:
    """The pts (and their time base) that :func:`make_clip` gives its frames.

    Constant rate clips use time base 1/fps and pts 0, 1, 2, ...; vfr clips use 1/1000 and irregular durations.
    """
    if not vfr:
        return list(range(frames)), Fraction(1, fps)
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += _VFR_DURATIONS_MS[i % len(_VFR_DURATIONS_MS)]
    return pts, Fraction(1, 1000)


def make_clip(
    path: str | Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    codec: str = "libx264",
    audio: bool = True,
    audio_codec: str = "aac",
    vfr: bool = False,
    pix_fmt: str | None = None,
    rotation: int = 0,
    color_space: str | None = None,
    color_range: str | None = None,
    audio_tracks: int = 1,
    subtitles: Sequence[str] = (),
    font: bool = False,
    chapters: int = 0,
    tags: bool = False,
    start: float = 0.0,
    picture: Callable[[int, int, int], np.ndarray] | None = None,
    data: bool = False,
    audio_priming: bool = False,
) -> Path:
    """Render a small real video clip with PyAV; the container is chosen from the path's extension.

    Args:
        path: Output file (.mp4, .mkv, .mov, .webm, .avi, ...). Parent folders must exist.
        frames: Number of video frames.
        size: (width, height). Odd sizes are fine with ffv1 or a 4:4:4 ``pix_fmt``; libx264 with yuv420p
            needs even sizes.
        fps: Nominal frame rate; constant-rate pts are 0..frames-1 in time base 1/fps.
        codec: Video encoder (libx264, libx265, ffv1, mpeg4, libvpx-vp9, ...).
        audio: Add a sine audio track (a 440 Hz tone rising in pitch) as long as the video.
        audio_codec: Audio encoder (aac, libopus, libmp3lame, pcm_s16le, ...).
        vfr: Give frames irregular durations (time base 1/1000, see :func:`clip_pts`) instead of 1/fps.
        pix_fmt: Encoder pixel format; default yuv420p (yuv444p for ffv1).
        rotation: Display rotation in degrees (counter-clockwise, as ``VideoFrame.rotation`` reads it back).
        color_space: Matrix tag, also used for the RGB->YUV maths: "bt709", "bt470bg", "smpte170m" or
            "bt2020nc"; default untagged (BT.601 maths).
        color_range: "tv" (limited) or "pc" (full), tag and maths; default untagged (limited maths).
        audio_tracks: How many audio tracks (each its own encode of the tone, so packets differ by track only
            in what the encoder does; with ``tags`` they get the languages of ``AUDIO_LANGUAGES``).
        subtitles: One subtitle stream per entry, made with that encoder ("ass", "subrip", "mov_text",
            "webvtt"), each with two events: "Hello <n>" at 10-35% and "World <n>" at 50-85% of the clip.
        font: Attach :data:`FONT_DATA` as ``FONT_NAME`` (Matroska only), as MKV files carry their subtitle fonts.
        chapters: Number of chapters, splitting the clip evenly, titled "Chapter 1", ...
        tags: Tag the container (title, comment) and the streams (language; the second audio track titled
            "commentary"; subtitles titled "Subs <n>", the first one default and forced).
        start: Start the video this many seconds after the audio (the video pts are shifted, audio starts at 0).
        picture: ``picture(index, width, height)`` -> (height, width, 3) uint8 (or uint16, for deep formats)
            RGB frame; default :func:`clip_frame`.
        data: Add a KLV data stream with three packets (MPEG-TS holds it; most containers cannot).
        audio_priming: Keep the audio encoder's priming delay as most real files do: the audio then starts
            before 0 (AAC by 1024 samples). By default it is cut so the audio starts at 0.

    Returns:
        The path, as a Path. Frame ``i`` shows ``picture(i, width, height)``.
    """
    path = Path(path)
    width, height = size
    pts, time_base = clip_pts(frames, fps, vfr)
    offset = round(start / time_base)
    pts = [p + offset for p in pts]
    last_duration = _VFR_DURATIONS_MS[(frames - 1) % len(_VFR_DURATIONS_MS)] if vfr else 1
    seconds = float((pts[-1] + last_duration) * time_base)  # video end, from time 0
    picture = picture or clip_frame
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuv444p" if codec == "ffv1" else "yuv420p")
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec in ("libx264", "libx265"):
            # Short GOP with B-frames: the clip then has keyframes to seek to and reordered (pts != dts) packets.
            stream.options = {"g": "5", "bf": "2", "crf": "20", "preset": "veryfast"}
            if codec == "libx265":
                stream.options["x265-params"] = "log-level=error"
        elif codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        space_code, matrix = _COLOR_SPACE_CODES[color_space] if color_space else (None, None)
        range_code, sws_range = _COLOR_RANGE_CODES[color_range] if color_range else (None, None)
        if space_code is not None:
            stream.codec_context.colorspace = space_code
        if range_code is not None:
            stream.codec_context.color_range = range_code
        astreams = []
        for track in range(audio_tracks if audio else 0):
            rate = _AUDIO_RATE.get(audio_codec, _DEFAULT_AUDIO_RATE)
            astream = container.add_stream(audio_codec, rate=rate)
            astream.layout = "mono"
            if tags:
                astream.metadata["language"] = AUDIO_LANGUAGES[track % len(AUDIO_LANGUAGES)]
                if track == 1:
                    astream.metadata["title"] = "commentary"
            astreams.append(astream)
        sstreams = []
        for n, sub_codec in enumerate(subtitles):
            sstream = container.add_stream(sub_codec)
            sstream.codec_context.subtitle_header = ASS_HEADER
            sstream.time_base = Fraction(1, 1000)
            if tags:
                sstream.metadata["language"], sstream.metadata["title"] = "fra", f"Subs {n}"
                if n == 0:
                    sstream.disposition = av.stream.Disposition.default | av.stream.Disposition.forced
            sstreams.append(sstream)
        dstream = container.add_data_stream("klv") if data else None
        if font:
            container.add_attachment(FONT_NAME, FONT_MIMETYPE, FONT_DATA)
        if chapters:
            ms = round(seconds * 1000)
            container.set_chapters([
                {"id": i + 1, "start": ms * i // chapters, "end": ms * (i + 1) // chapters,
                 "time_base": Fraction(1, 1000), "metadata": {"title": f"Chapter {i + 1}"}}
                for i in range(chapters)
            ])
        if tags:
            container.metadata.update({"title": "vsr test clip", "comment": "made by tests/conftest.py"})
        packets = []
        for i, p in enumerate(pts):
            img = picture(i, width, height)
            rgb_format = "rgb48le" if img.dtype == np.uint16 else "rgb24"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=rgb_format)
            frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=matrix, dst_color_range=sws_range)
            frame.pts, frame.time_base = p, time_base
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for astream in astreams:
            packets += _encode_tone(astream, seconds=seconds, start_at_zero=not audio_priming)
        for n, sstream in enumerate(sstreams):
            packets += _encode_subtitles(sstream, n, seconds)
        for k in range(3 if dstream is not None else 0):
            # A made-up KLV set (a 16-byte universal key, length, value): only the bytes coming back matter.
            packet = av.Packet(bytes.fromhex("060e2b34020b01010e01030101000000") + bytes([4, k, k, k, k]))
            packet.pts = packet.dts = round(seconds * (0.1 + 0.3 * k) * 1000)
            packet.time_base, packet.stream = Fraction(1, 1000), dstream
            packets.append(packet)
        # Mux in time order, as real recordings are: muxers shift timestamps (e.g. for an MP3 encoder's negative
        # start) consistently only when they see packets interleaved.
        packets.sort(key=lambda pkt: pkt.dts * pkt.time_base)
        container.mux(packets)
    return path


def _encode_subtitles(stream, n: int, seconds: float) -> list:
    packets = []
    for k, (lo, hi, word) in enumerate(((0.10, 0.35, "Hello"), (0.50, 0.85, "World"))):
        start, end = round(seconds * lo * 1000), round(seconds * hi * 1000)
        event = SubtitleSet.create(f"{k},0,Default,,0,0,0,,{word} {n}".encode(), 0, end - start, pts=start)
        packet = stream.codec_context.encode_subtitle(event)
        # Timing set here in the stream's milliseconds (encode_subtitle mixes units: pts as given, duration in ms).
        packet.pts, packet.dts, packet.duration, packet.time_base = start, start, end - start, Fraction(1, 1000)
        packet.stream = stream
        packets.append(packet)
    return packets


def _encode_tone(stream, seconds: float, start_at_zero: bool = True) -> list:
    rate = stream.codec_context.sample_rate
    n = max(int(round(seconds * rate)), 1)
    t = np.arange(n) / rate
    # A rising tone (not silence) so encoded packets differ from each other.
    wave = (0.3 * np.sin(2 * math.pi * (440 + 220 * t) * t)).astype(np.float32)
    chunk, packets = 1024, []
    for start in range(0, n, chunk):
        piece = wave[None, start : start + chunk]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        packets += stream.encode(frame)
    packets += stream.encode(None)
    # Encoders with a delay (MP3, AAC) start at a negative pts; AVI cannot store that and shifts the video by a
    # frame to compensate, so start the audio at 0 instead (a few ms of delay do not matter in a test clip).
    shift = -min((pkt.pts for pkt in packets if pkt.pts is not None), default=0)
    if shift > 0 and start_at_zero:
        for pkt in packets:
            pkt.pts, pkt.dts = pkt.pts + shift, pkt.dts + shift
    return packets


# --- reading files back, for comparing a source with what vsr wrote ----------------------------------------------


def video_times(path) -> list[Fraction]:
    """Presentation times (seconds) of the main video stream's frames, from its packets."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(p.pts * p.time_base for p in container.demux(stream) if p.size and not p.is_discard)


def without_adts(payload: bytes) -> bytes:
    """Raw AAC from a packet that may hold ADTS frames (MPEG-TS wraps AAC in ADTS headers, and may put several
    frames in one packet; muxers of other containers strip them): the frames' payloads, joined."""
    raw = b""
    while payload[:1] == b"\xff" and len(payload) > 7 and payload[1] & 0xF6 == 0xF0:
        header = 7 if payload[1] & 1 else 9
        length = (payload[3] & 3) << 11 | payload[4] << 3 | payload[5] >> 5
        raw, payload = raw + payload[header:length], payload[length:]
    return raw + payload


def audio_bytes(path) -> bytes:
    """Every byte of raw audio of the first audio stream, for comparing across containers that split or wrap
    packets differently (MPEG-TS)."""
    return b"".join(p for p, _ in other_streams(path)[("audio", 0)])


def other_streams(path) -> dict[tuple[str, int], list[tuple[bytes, Fraction]]]:
    """Every packet of every stream but the main video: {(type, n-th of that type): [(payload, time), ...]}.

    Streams the demuxer keeps to itself (MP4's chapter track) and attachments (no packets) are left out.
    """
    with av.open(str(path)) as container:
        streams = [s for s in list(container.streams)[1:]
                   if s.discard != av.stream.Discard.all and s.type != "attachment"]
        counts, keys = Counter(), {}
        for s in streams:
            keys[s.index] = (s.type, counts[s.type])
            counts[s.type] += 1
        packets = {key: [] for key in keys.values()}
        for p in container.demux(streams) if streams else ():
            if p.size:
                packets[keys[p.stream.index]].append((without_adts(bytes(p)), p.pts * p.time_base))
        return packets


@pytest.fixture
def clip_factory(tmp_path):
    """``clip_factory(name, **make_clip_kwargs) -> Path``: make_clip into this test's tmp_path."""

    def factory(name: str = "clip.mp4", **kwargs) -> Path:
        return make_clip(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def clip_mp4(tmp_path) -> Path:
    """12 frames, 64x48 @ 10 fps, H.264 + AAC mono, in MP4."""
    return make_clip(tmp_path / "clip.mp4")


@pytest.fixture
def clip_vfr(tmp_path) -> Path:
    """12 frames of irregular durations (variable frame rate), 64x48, H.264 + AAC, in MP4."""
    return make_clip(tmp_path / "vfr.mp4", vfr=True)


@pytest.fixture
def clip_mkv(tmp_path) -> Path:
    """12 frames, 64x48, H.264 + Opus, in Matroska."""
    return make_clip(tmp_path / "clip.mkv", audio_codec="libopus")


def one_error_line(result, *fragments):
    """A CliRunner result that failed with exactly one `Error:` line on stderr holding every fragment."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def enhance_until_crash(source, out, model, cfg, after: int = 12) -> None:
    """Runs enhance_video with a writer that fails once more than ``after`` frames would have been written (a crash
    mid-run, leaving the finished resume segments behind)."""
    from vsr import video
    from vsr.errors import VsrError
    from vsr.pipeline import enhance_video

    real_write, written = video.VideoWriter.write, [0]

    def crashing_write(self, frames, pts):
        if written[0] + len(pts) > after:
            raise VsrError("simulated crash")
        written[0] += len(pts)
        return real_write(self, frames, pts)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(video.VideoWriter, "write", crashing_write)
        with pytest.raises(VsrError, match="simulated crash"):
            enhance_video(source, out, model, cfg)
