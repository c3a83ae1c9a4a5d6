"""Colour tags: FFmpeg's enum codes by the names ffprobe prints, and the swscale arguments that use them.

YUV<->RGB uses the input's matrix and range (tags, else BT.709 for HD / BT.601 for SD and limited range, as players
assume); the writer converts back with the matrix it tags on the output, so colours survive a round trip.
"""

from __future__ import annotations

import av
from av.video.reformatter import Interpolation

from vsr.errors import VsrError

# swscale flags for every YUV<->RGB conversion: without them swscale takes its unscaled fast path, which repeats
# each 4:2:0 chroma sample over 2x2 pixels (4x1 for DV's 4:1:1) and rounds coarsely; the model then upscales
# the colour blocks. Bicubic chroma with accurate rounding costs ~10 ms per SD frame; on a chroma-rich clip a
# x1 RGB->yuv420p->RGB round trip goes from Cb/Cr 37.4/36.3 dB to 45.0/38.8 dB (Y 46.0 -> 56.5 dB).
SWS_QUALITY = (Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
               | Interpolation.FULL_CHR_H_INP)

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


def pix_fmt_bits(pix_fmt: str) -> int:
    """Bits per component of a pixel format name (8 for yuv420p, 10 for yuv420p10le)."""
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except ValueError:
        raise VsrError(f"unknown pixel format {pix_fmt!r} (e.g. yuv420p, yuv420p10le)") from None


def tag_name(table: dict[str, int], code: int | None) -> str | None:
    """The name of an enum ``code`` in one of the tables above; None for unknown/unspecified."""
    return next((name for name, c in table.items() if c == code), None)


def frame_colour(frame: av.VideoFrame, stream) -> tuple[str | None, str | None, str | None, str | None]:
    """(range, space, primaries, trc) tag names: the frame's own, else the stream's; None where untagged."""
    ctx = stream.codec_context
    rng = tag_name(COLOR_RANGES, frame.color_range) or tag_name(COLOR_RANGES, ctx.color_range)
    if rng is None and frame.format.name.startswith("yuvj"):
        rng = "pc"  # the deprecated JPEG formats are full range by definition
    return (rng, tag_name(COLOR_SPACES, frame.colorspace) or tag_name(COLOR_SPACES, ctx.colorspace),
            tag_name(COLOR_PRIMARIES, frame.color_primaries) or tag_name(COLOR_PRIMARIES, ctx.color_primaries),
            tag_name(COLOR_TRCS, frame.color_trc) or tag_name(COLOR_TRCS, ctx.color_trc))


def default_space(width: int, height: int) -> str:
    """The matrix players assume for untagged video: BT.709 from 720p up, BT.601 below."""
    return "bt709" if width >= 1280 or height >= 720 else "smpte170m"


def sws_args(pix_fmt: str, color_space: str | None, color_range: str | None, width: int, height: int) -> dict:
    """reformat() keywords naming the matrix and range of a YUV format; RGB/gray formats take none."""
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or len(fmt.components) < 3:
        return {}
    matrix = _SWS_MATRIX.get(color_space or default_space(width, height), "ITU601")
    return {"matrix": matrix, "range": _SWS_RANGE.get(color_range or "tv", "MPEG")}


def tag_stream(stream, *, color_range: str | None, color_space: str | None, color_primaries: str | None,
               color_trc: str | None) -> None:
    """Write colour tags onto an output stream's codec context (None leaves a tag as it is)."""
    ctx = stream.codec_context
    if color_range in COLOR_RANGES:
        ctx.color_range = COLOR_RANGES[color_range]
    if color_space in COLOR_SPACES:
        ctx.colorspace = COLOR_SPACES[color_space]
    if color_primaries in COLOR_PRIMARIES:
        ctx.color_primaries = COLOR_PRIMARIES[color_primaries]
    if color_trc in COLOR_TRCS:
        ctx.color_trc = COLOR_TRCS[color_trc]
