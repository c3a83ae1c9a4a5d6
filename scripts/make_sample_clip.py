"""Render the demo clip: a few seconds of real H.264 video with an AAC audio track, made with PyAV.

The picture has what super-resolution is judged on: scrolling text, thin lines, a checkerboard, smooth gradients
and a moving ball. The audio is a short melody (sine tones with soft attacks), so copying it packet for packet
is easy to hear and to check.

    python scripts/make_sample_clip.py                    # -> samples/sample.mp4 (320x180, 25 fps, 4 s)
    python scripts/make_sample_clip.py out.mp4 --size 480x270 --seconds 2
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

AUDIO_RATE = 44100
# C major arpeggio and back, one note per quarter second (Hz).
MELODY = (261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23)


def render_frame(index: int, fps: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` as (height, width, 3) uint8 RGB."""
    t = index / fps
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([40 + 60 * y / height, 80 + 80 * np.sin(x / width * math.pi + t), 160 + 60 * y / height], -1)
    img = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    # A checkerboard and fine lines in the lower part: aliasing shows at once when upscaled badly.
    cell = max(height // 18, 2)
    for row in range(height * 2 // 3, height, cell):
        for col in range(0, width, cell):
            if (row // cell + col // cell + index // 5) % 2:
                draw.rectangle([col, row, col + cell - 1, row + cell - 1], fill=(230, 230, 230))
    for i in range(0, width, 6):
        draw.line([(i, height * 2 // 3 - 12), (i + 4, height * 2 // 3 - 2)], fill=(250, 220, 90), width=1)
    # A ball moving on a circle.
    cx = width / 2 + width / 3 * math.cos(t * 1.5)
    cy = height / 3 + height / 6 * math.sin(t * 1.5)
    r = height / 10
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 60, 50), outline=(20, 20, 20), width=2)
    # Scrolling text, large and small.
    big = ImageFont.load_default(size=max(height // 7, 10))
    small = ImageFont.load_default(size=max(height // 16, 8))
    draw.text((width - (index * 3) % (width * 2), height // 12), "vsr: video super-resolution", font=big,
              fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    draw.text((4, height * 2 // 3 - 30), f"frame {index:04d}  t={t:5.2f}s  0123456789 abcdefghijklmnop",
              font=small, fill=(255, 255, 255))
    return np.asarray(img)


def melody(start: int, count: int) -> np.ndarray:
    """Audio samples [start, start + count) of the melody as float32 mono in [-1, 1]."""
    n = np.arange(start, start + count)
    t = n / AUDIO_RATE
    note = (t / 0.25).astype(int)
    freq = np.asarray(MELODY)[note % len(MELODY)]
    within = t - note * 0.25
    envelope = np.minimum(within / 0.02, 1) * np.exp(-within * 4)  # soft attack, gentle decay
    return (0.3 * envelope * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def make_sample_clip(path: Path, *, width: int = 320, height: int = 180, fps: int = 25, seconds: float = 4.0,
                     crf: int = 18) -> Path:
    """Render the clip to ``path`` (container from the extension) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = max(int(round(seconds * fps)), 1)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # Tag what the conversion below uses, so every player decodes the colours the same way.
        video.codec_context.colorspace, video.codec_context.color_range = 6, 1  # smpte170m (BT.601), tv range
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        sample = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(render_frame(i, fps, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
            # The audio for this frame's time span, muxed as we go so the file is interleaved like a recording.
            end = (i + 1) * AUDIO_RATE // fps
            chunk = av.AudioFrame.from_ndarray(melody(sample, end - sample)[None], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = AUDIO_RATE, sample, Fraction(1, AUDIO_RATE)
            container.mux(audio.encode(chunk))
            sample = end
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default="samples/sample.mp4", type=Path,
                        help="file to write (default: %(default)s); replaced if it exists")
    parser.add_argument("--size", default="320x180", help="WIDTHxHEIGHT, both even (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 320x180, got {args.size!r}")
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        parser.error(f"--size needs positive even numbers (H.264 4:2:0), got {args.size}")
    if args.fps <= 0 or args.seconds <= 0:
        parser.error("--fps and --seconds must be positive")
    path = make_sample_clip(args.output, width=width, height=height, fps=args.fps, seconds=args.seconds)
    print(f"wrote {path} ({width}x{height}, {args.fps} fps, {args.seconds:g} s, H.264 + AAC)")


if __name__ == "__main__":
    main()
