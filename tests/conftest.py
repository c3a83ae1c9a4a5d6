"""Shared test helpers: small real clips rendered with PyAV (H.264 video + a real sine audio track).

Other test files use them in one of two ways::

    from conftest import make_clip                      # plain function, any path

    def test_x(clip_mp4, clip_vfr, clip_factory): ...   # fixtures, files live in tmp_path
        path = clip_factory("odd.mkv", size=(63, 47), audio_codec="libopus")
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Audio sample rate per codec: Opus only runs at 48 kHz; the rest get a small rate to keep clips tiny.
_AUDIO_RATE = {"libopus": 48000, "opus": 48000}
_DEFAULT_AUDIO_RATE = 22050
# FFmpeg's AVColorSpace / AVColorRange codes and the swscale matrix for the tags make_clip accepts.
_COLOR_SPACE_CODES = {"bt709": (1, "ITU709"), "bt470bg": (5, "ITU601"), "smpte170m": (6, "ITU601"),
                      "bt2020nc": (9, "BT2020")}
_COLOR_RANGE_CODES = {"tv": (1, "MPEG"), "pc": (2, "JPEG")}
# Irregular frame durations (in ms) cycled through by vfr=True clips; deliberately not a multiple of any rate.
_VFR_DURATIONS_MS = (40, 40, 120, 33, 67, 250, 17, 83)


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

    Returns:
        The path, as a Path. Frame ``i`` shows :func:`clip_frame` ``(i, width, height)``.
    """
    path = Path(path)
    width, height = size
    pts, time_base = clip_pts(frames, fps, vfr)
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
        if rotation:
            stream.set_display_rotation(rotation)
        space_code, matrix = _COLOR_SPACE_CODES[color_space] if color_space else (None, None)
        range_code, sws_range = _COLOR_RANGE_CODES[color_range] if color_range else (None, None)
        if space_code is not None:
            stream.codec_context.colorspace = space_code
        if range_code is not None:
            stream.codec_context.color_range = range_code
        astream = None
        if audio:
            rate = _AUDIO_RATE.get(audio_codec, _DEFAULT_AUDIO_RATE)
            astream = container.add_stream(audio_codec, rate=rate)
            astream.layout = "mono"
        packets = []
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(clip_frame(i, width, height), format="rgb24")
            frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=matrix, dst_color_range=sws_range)
            frame.pts, frame.time_base = p, time_base
            packets += stream.encode(frame)
        packets += stream.encode(None)
        if astream is not None:
            last_duration = _VFR_DURATIONS_MS[(frames - 1) % len(_VFR_DURATIONS_MS)] if vfr else 1
            packets += _encode_tone(astream, seconds=float((pts[-1] + last_duration) * time_base))
        # Mux in time order, as real recordings are: muxers shift timestamps (e.g. for an MP3 encoder's negative
        # start) consistently only when they see packets interleaved.
        packets.sort(key=lambda pkt: pkt.dts * pkt.time_base)
        container.mux(packets)
    return path


def _encode_tone(stream, seconds: float) -> list:
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
    if shift > 0:
        for pkt in packets:
            pkt.pts, pkt.dts = pkt.pts + shift, pkt.dts + shift
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
