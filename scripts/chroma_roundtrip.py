#!/usr/bin/env python3
"""What vsr's swscale flags (vsr.video.colour.SWS_QUALITY) gain over swscale's default on a x1 RGB -> YUV -> RGB
round trip of a chroma-rich frame, and what they cost per SD frame. Prints one table (BT.601, limited range).

    .venv/bin/python scripts/chroma_roundtrip.py
"""

import platform
import time

import av
import numpy as np

from vsr.video.colour import SWS_QUALITY


def chroma_rich(height: int = 240, width: int = 320) -> np.ndarray:
    """Smooth colour gradients in all three channels and a saturated red block with sharp edges."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([128 + 100 * np.sin(x / 7.0), 128 + 100 * np.cos(y / 5.0), 128 + 100 * np.sin((x + y) / 9.0)], -1)
    img[height // 4:3 * height // 4, width // 3:2 * width // 3] = (220, 30, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def ycbcr(rgb: np.ndarray) -> list[np.ndarray]:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return [luma, (b - luma) * 0.564, (r - luma) * 0.713]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / np.mean((a - b) ** 2)))


def round_trip(img: np.ndarray, pix_fmt: str, flags) -> np.ndarray:
    kwargs = {"interpolation": flags} if flags is not None else {}
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    yuv = frame.reformat(format=pix_fmt, dst_colorspace="ITU601", dst_color_range="MPEG", **kwargs)
    return yuv.reformat(format="rgb24", src_colorspace="ITU601", src_color_range="MPEG", **kwargs).to_ndarray()


def ms_per_frame(pix_fmt: str, flags, repeats: int = 30) -> float:
    img = np.random.default_rng(0).integers(0, 256, (480, 720, 3), dtype=np.uint8)
    start = time.perf_counter()
    for _ in range(repeats):
        round_trip(img, pix_fmt, flags)
    return (time.perf_counter() - start) / repeats * 1000


def cpu_name() -> str:
    """The CPU's model name and its bf16 units, from /proc/cpuinfo where there is one."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    units = [flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in info]
    return f"{name} ({', '.join(units) or 'no bf16 units'})"


def main() -> None:
    img = chroma_rich()
    print(f"CPU: {cpu_name()}, PyAV {av.__version__}")
    print("| conversion | format | Y dB | Cb dB | Cr dB | ms per 720x480 round trip |")
    print("|---|---|---|---|---|---|")
    for name, flags in (("swscale default", None), ("vsr (SWS_QUALITY)", SWS_QUALITY)):
        for pix_fmt in ("yuv420p", "yuv411p"):
            scores = [psnr(a, b) for a, b in zip(ycbcr(img), ycbcr(round_trip(img, pix_fmt, flags)))]
            print(f"| {name} | {pix_fmt} | " + " | ".join(f"{s:.2f}" for s in scores)
                  + f" | {ms_per_frame(pix_fmt, flags):.1f} |")


if __name__ == "__main__":
    main()
