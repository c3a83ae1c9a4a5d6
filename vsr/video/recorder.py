"""What recorders do to pictures, through FFmpeg's own code (PyAV, no torch): MPEG-2 at DVD bitrates, chroma
subsampling by swscale (4:2:0, DV's 4:1:1), and deinterlacing of woven fields (bwdif, yadif, or line doubling).

These imitate footage for training and benchmarks (`vsr.data.Degradation`); they work on whole clips in memory.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from av.filter import Graph

from vsr.errors import VsrError
from vsr.video.codecs import round_trip

DEINTERLACERS = ("bwdif", "yadif", "bob")
CHROMA_FORMATS = ("yuv420p", "yuv422p", "yuv411p")
# DVD video: 720x576 at 25 fps (or 720x480 at 29.97) and 2-9.8 Mbit/s, i.e. about 0.2 (long-play recorders) to
# 0.95 bits per pixel; a bitrate is given per pixel so that a small crop gets the quality a full frame would.
DVD_BITS_PER_PIXEL = (0.2, 0.95)


def _check_clip(frames: np.ndarray, what: str) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VsrError(f"{what} needs (N,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")


def mpeg2_round_trip(frames: np.ndarray, bits_per_pixel: float, interlaced: bool = False, fps: int = 25) -> np.ndarray:
    """Encodes frames with FFmpeg's MPEG-2 encoder as a DVD recorder would, and decodes them again.

    DVD-like settings: 4:2:0, a 12-frame GOP with two B-frames, a mean bitrate of ``bits_per_pixel`` times the
    pixel rate held by a DVD-sized rate-control buffer; ``interlaced`` adds interlaced DCT and motion estimation
    (``+ildct+ilme``, top field first), as for camcorder footage whose two fields were captured 1/50 s apart.

    Args:
        frames: (N,H,W,3) uint8 RGB; odd sizes are padded by edge pixels and cropped back.
        bits_per_pixel: Bitrate over pixel rate; see :data:`DVD_BITS_PER_PIXEL`.
        interlaced: Code the frames as interlaced (woven fields).
        fps: The nominal frame rate the bitrate is spread over.

    Returns:
        (N,H,W,3) uint8 RGB, the decoded frames.
    """
    _check_clip(frames, "mpeg2_round_trip")
    if bits_per_pixel <= 0:
        raise VsrError(f"MPEG-2 needs a positive bitrate, got {bits_per_pixel} bits per pixel")
    _, height, width, _ = frames.shape
    bitrate = max(1, int(bits_per_pixel * (width + width % 2) * (height + height % 2) * fps))
    # A DVD's rate control: peak twice the mean and a buffer of about 0.3 s (1.8 Mbit at 6 Mbit/s); without the
    # buffer, a clip of a few frames never feels its bitrate. One thread: data-loader workers share cores.
    options = {"b": str(bitrate), "maxrate": str(2 * bitrate), "bufsize": str(bitrate * 8 // fps),
               "g": "12", "bf": "2", "threads": "1"}
    if interlaced:
        options.update(flags="+ildct+ilme", top="1")
    return round_trip(frames, "mpeg2video", options, "mpeg", rate=fps)


def subsample_chroma(img: np.ndarray, pix_fmt: str) -> np.ndarray:
    """Converts RGB to a subsampled YUV format and back with swscale, as a capture chain stores colour.

    ``yuv420p`` halves chroma both ways (DVD, DVB, most H.264), ``yuv422p`` horizontally (broadcast, DVCPRO50),
    ``yuv411p`` keeps a quarter of the horizontal chroma resolution and all of the vertical (NTSC DV): colour
    edges bleed sideways. (H, W, 3) uint8 in and out, any size.
    """
    if pix_fmt not in CHROMA_FORMATS:
        raise VsrError(f"unknown chroma format {pix_fmt!r}; choose one of: {', '.join(CHROMA_FORMATS)}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    return frame.reformat(format=pix_fmt).to_ndarray(format="rgb24")


def weave(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """One interlaced frame from two fields' pictures: even lines from ``top`` (earlier), odd from ``bottom``."""
    frame = top.copy()
    frame[1::2] = bottom[1::2]
    return frame


def _line_double(frame: np.ndarray) -> np.ndarray:
    # The cheapest deinterlacer (many DVRs): keep the top field, rebuild each bottom line as the mean of its
    # neighbours above and below (the last one copies the line above).
    out = frame.astype(np.float32)
    top = out[0::2]
    below = np.concatenate([top[1:], top[-1:]])[: out[1::2].shape[0]]
    out[1::2] = (top[: below.shape[0]] + below) / 2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def deinterlace(frames: np.ndarray, method: str = "bwdif") -> np.ndarray:
    """Deinterlaces woven top-field-first frames, one output frame per input frame (at the top field's time).

    ``bwdif`` and ``yadif`` are FFmpeg's filters (motion-adaptive, using the neighbouring frames); ``bob`` doubles
    the top field's lines. Frames go through the filter graph as yuv444p, so the deinterlacer adds no chroma loss.

    Args:
        frames: (N,H,W,3) uint8 RGB, consecutive woven frames.
        method: One of :data:`DEINTERLACERS`.

    Returns:
        (N,H,W,3) uint8 RGB.
    """
    _check_clip(frames, "deinterlace")
    if method not in DEINTERLACERS:
        raise VsrError(f"unknown deinterlacer {method!r}; choose one of: {', '.join(DEINTERLACERS)}")
    if method == "bob":
        return np.stack([_line_double(f) for f in frames])
    n, height, width, _ = frames.shape
    graph = Graph()
    source = graph.add_buffer(width=width, height=height, format="yuv444p", time_base=Fraction(1, 25))
    node = graph.add(method, "mode=send_frame:parity=tff:deint=all")
    sink = graph.add("buffersink")
    source.link_to(node)
    node.link_to(sink)
    graph.configure()
    out: list[np.ndarray] = []

    def drain() -> None:
        while True:
            try:
                out.append(graph.pull().to_ndarray(format="rgb24"))
            except (av.BlockingIOError, av.EOFError):
                return

    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv444p")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    if len(out) != n:
        raise VsrError(f"{method} returned {len(out)} of {n} frames")
    return np.stack(out)
