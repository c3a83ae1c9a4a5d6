"""Encoders: which are available, their options, the output pixel format, and an in-memory encode/decode."""

from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from vsr.errors import VsrError

CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1", "mpeg2video", "mpeg4", "h264_nvenc", "hevc_nvenc")

_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 28, "libvpx-vp9": 24, "h264_nvenc": 19, "hevc_nvenc": 21,
                "mpeg2video": 2, "mpeg4": 2}
_MAX_CRF = {"libx264": 51, "libx265": 51, "libsvtav1": 63, "libvpx-vp9": 63, "h264_nvenc": 51, "hevc_nvenc": 51,
            "mpeg2video": 31, "mpeg4": 31}
# The encoder each output container gets when none is asked for: one the container carries with exact timestamps.
# WebM holds VP8/VP9/AV1 only; MPEG-PS (DVD .mpg/.vob) stores timestamps reliably for MPEG video only; AVI gets
# MPEG-4 part 2 without B-frames (see encoder_options): AVI stores frame numbers and no reordering, and FFmpeg
# reads H.264 in AVI back one frame late (its parser gives pts = dts + 1) where MPEG-4 comes back exact.
_CONTAINER_CODECS = {".webm": "libvpx-vp9", ".mpg": "mpeg2video", ".mpeg": "mpeg2video", ".vob": "mpeg2video",
                     ".avi": "mpeg4"}
# Where the input's own container cannot hold the re-encoded video (DV tapes, elementary streams), the default
# output is Matroska.
_OUTPUT_SUFFIXES = {".dv": ".mkv", ".m2v": ".mkv", ".h264": ".mkv", ".264": ".mkv", ".hevc": ".mkv",
                    ".265": ".mkv", ".asf": ".mkv", ".wmv": ".mkv", ".flv": ".mkv", ".3gp": ".mp4", ".ogv": ".mkv",
                    ".mxf": ".mov"}


def default_codec(output) -> str:
    """The encoder for an output file when none is given: by its container (see :data:`_CONTAINER_CODECS`)."""
    return _CONTAINER_CODECS.get(os.path.splitext(os.fspath(output))[1].lower(), "libx264")


def default_output_suffix(input_path) -> str:
    """The extension of the default output for an input: the input's own, unless its container cannot hold it."""
    suffix = os.path.splitext(os.fspath(input_path))[1]
    return _OUTPUT_SUFFIXES.get(suffix.lower(), suffix)
# x264 preset names translated for encoders that number their presets instead.
_SVT_PRESETS = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8, "medium": 6, "slow": 4,
                "slower": 3, "veryslow": 2}
_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p3",
                  "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7"}
# NVENC encodes 10-bit H.264 only on the newest GPUs; elsewhere the encoder would fail to open mid-run.
_NO_DEEP = {"h264_nvenc"}


def default_pix_fmt(codec: str) -> str:
    """The 8-bit encoder format: 4:2:0 as players expect, 4:4:4 for the lossless ffv1."""
    return "yuv444p" if codec == "ffv1" else "yuv420p"


def output_pix_fmt(info, codec: str, requested: str | None = None, warnings: list[str] | None = None) -> str:
    """The pixel format to encode with: ``requested`` if given, else one that keeps the input's bit depth.

    8-bit input gets :func:`default_pix_fmt`. Deeper input (``info.bit_depth`` > 8, e.g. HEVC Main10) gets the
    same chroma layout at the input's depth when ``codec`` can encode it (yuv420p10le for libx264, libx265 and
    libsvtav1; yuv444p10le for ffv1; p010le for hevc_nvenc; 12-bit where both sides have it), else the 8-bit
    format and one warning line.

    Args:
        info: The input's :class:`~vsr.video.VideoInfo` (only ``bit_depth`` and ``pix_fmt`` are read).
        codec: The video encoder.
        requested: An explicit choice (``--pix-fmt``); returned as it is (the writer checks it).
        warnings: A list to append the warning to; None drops it.

    Returns:
        A pixel format name for :class:`~vsr.video.VideoWriter`'s ``pix_fmt``.
    """
    if requested:
        return requested
    base = default_pix_fmt(codec)
    depth = info.bit_depth
    if depth <= 8:
        return base
    try:
        supported = {f.name for f in av.Codec(codec, "w").video_formats or ()}
    except ValueError:  # unknown encoder: the writer reports it
        return base
    # The shallowest format that holds every input bit first; a shallower deep format beats falling to 8 bits.
    depths = [d for d in (10, 12, 16) if d >= depth] + [d for d in (12, 10) if d < depth]
    candidates = [f"{base}{d}le" for d in depths]
    if base == "yuv420p":
        candidates.append("p010le")  # NVENC's 10-bit 4:2:0
    if codec not in _NO_DEEP:
        for pix_fmt in candidates:
            if pix_fmt in supported:
                return pix_fmt
    if warnings is not None:
        warnings.append(f"{codec} cannot encode {depth}-bit video: output is 8-bit {base} (input is {info.pix_fmt})")
    return base


def encoder_options(codec: str, crf: int | None, preset: str | None, container: str = "") -> dict[str, str]:
    """Encoder options for a quality (``crf``, in each encoder's own scale) and an x264-style preset name.

    ``container`` is the output's extension: into AVI, encoders get no B-frames (AVI keeps one timestamp per
    frame, in decode order, so reordered frames would come back with wrong times).
    """
    options = _quality_options(codec, crf, preset)
    if container.lower() == ".avi" and codec in ("libx264", "libx265", "mpeg4", "mpeg2video"):
        options["x265-params" if codec == "libx265" else "bf"] = (
            options.get("x265-params", "log-level=error") + ":bframes=0" if codec == "libx265" else "0")
    return options


def _quality_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
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
    if codec == "libvpx-vp9":
        # Constant quality (b=0), row-based multithreading and speed 4 of 0-8: libvpx's defaults (speed 1, one
        # thread per tile column) made VP9 the slowest stage of a run, slower than the model on small frames.
        speed = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 4, "slow": 2,
                 "slower": 1, "veryslow": 0}.get(preset or "", preset or 4)
        return {"crf": str(crf), "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": str(speed)}
    if codec in ("mpeg2video", "mpeg4"):
        # Constant quantiser, 1 (best) to 31, given as --crf. Through qmin = qmax, since `ffmpeg -q:v` works by
        # setting each frame's quality, which PyAV cannot; the bit rate and buffer are only a ceiling.
        return {"qmin": str(crf), "qmax": str(crf), "b": "100M", "maxrate": "100M", "bufsize": "100M"}
    return {"crf": str(crf)}


def check_codec(codec: str) -> None:
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
    # One thread: this runs inside data-loader workers, which already use every core between them.
    options = {**encoder_options(codec, crf, preset), "threads": "1"}
    if codec == "libx264":
        # x264's lookahead reads memory it never wrote on small frames: the same frames came back different in
        # ~3 % of calls (seen on 32x32 clips). Without it (no mb-tree, as a hardware recorder) the round trip is
        # a function of its input, so a seeded degradation is reproducible.
        options["rc-lookahead"] = "0"
    return round_trip(frames, codec, options, "matroska" if codec == "ffv1" else "mp4")


def round_trip(frames: np.ndarray, codec: str, options: dict[str, str], container_format: str,
               rate: int = 25) -> np.ndarray:
    """Encodes (N,H,W,3) uint8 RGB frames as yuv420p with ``codec`` and ``options`` into an in-memory
    ``container_format`` file and decodes them again; odd sizes are padded by edge pixels and cropped back."""
    n, height, width, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
        stream.options = options
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



def user_encoder_options(codec: str, options: dict[str, str]) -> dict[str, str]:
    """``-e KEY=VALUE`` options as they go to the encoder: a user's ``x265-params`` keeps x265 quiet (log-level=error,
    as vsr's own default is) unless it sets a log level itself."""
    options = dict(options)
    params = options.get("x265-params")
    if codec == "libx265" and params is not None and "log-level" not in params:
        options["x265-params"] = f"log-level=error:{params}"
    return options


def check_encoder_options(codec: str, options: dict[str, str], crf: int | None = None,
                          preset: str | None = None, pix_fmt: str | None = None) -> None:
    """Open ``codec`` once on a small frame with ``options`` (over vsr's own crf/preset), before any real work.

    Catches a misspelt key (FFmpeg leaves it unconsumed) and a value the encoder refuses (it fails to open), with
    the encoder's own complaint in the message. Hardware encoders that cannot open on this machine are not checked.

    Raises:
        VsrError: an option the encoder does not have, or a value it refuses.
    """
    if not options or (codec.endswith("_nvenc") and not _encoder_opens(codec)):
        return
    check_codec(codec)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.time_base = 64, 64, Fraction(1, 25)
    ctx.pix_fmt = pix_fmt or default_pix_fmt(codec)
    ctx.options = {**encoder_options(codec, crf, preset), **options}
    # x264/x265 print their complaints straight to the process's stderr: catch them for the one-line error.
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            ctx.open()
            refused = None
        except (av.FFmpegError, ValueError) as err:
            refused = err
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        said = [line.strip() for line in captured.read().decode(errors="replace").splitlines() if "error" in line]
    if refused is not None:
        why = said[0] if said else getattr(refused, "strerror", None) or str(refused)
        given = ", ".join(f"{k}={v}" for k, v in options.items())
        raise VsrError(f"{codec} refuses the encoder options {given}: {why}")
    unknown = sorted(set(ctx.options) & set(options))
    if unknown:
        raise VsrError(f"{codec} has no option {', '.join(unknown)} (see ffmpeg -h encoder={codec})")
