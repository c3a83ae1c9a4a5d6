"""The output size of a run: ``--outscale``, ``--width`` / ``--height`` and square pixels.

A model upscales by its own integer factor; any other output size is that output resampled once, on the device,
by `vsr.models.runner.resize_frames` (antialiased bicubic).
"""

from __future__ import annotations

from fractions import Fraction

from vsr.errors import VsrError


def output_size(
    width: int, height: int, scale: int, outscale: float | None = None, out_width: int | None = None,
    out_height: int | None = None,
) -> tuple[int, int]:
    """The size frames of ``width`` x ``height`` come out at, as (width, height).

    Args:
        width: input frame width.
        height: input frame height.
        scale: the model's factor (the size without any of the options below).
        outscale: a factor >= 1 instead of the model's (e.g. 3.5 with a x4 model).
        out_width: the output width; alone, the height follows from the frame's aspect ratio (which keeps the
            display aspect: the pixel aspect is carried over unchanged).
        out_height: the output height; alone, the width follows; with ``out_width``, both are exact.

    Raises:
        VsrError: ``outscale`` together with a width or height, a factor below 1, or a size below one pixel.
    """
    if outscale is not None and (out_width is not None or out_height is not None):
        raise VsrError("give --outscale or --width/--height, not both")
    if outscale is not None:
        if not outscale >= 1 or outscale == float("inf"):
            raise VsrError(f"--outscale must be a factor of 1 or more, got {outscale:g}")
        size = (round(width * outscale), round(height * outscale))
    elif out_width is not None and out_height is not None:
        size = (out_width, out_height)
    elif out_width is not None:
        size = (out_width, round(out_width * height / width))
    elif out_height is not None:
        size = (round(out_height * width / height), out_height)
    else:
        size = (width * scale, height * scale)
    if min(size) < 1:
        raise VsrError(f"output size {size[0]}x{size[1]} is empty; choose a larger --width/--height")
    return size


def square_pixel_size(width: int, height: int, sample_aspect: Fraction) -> tuple[int, int]:
    """The size showing ``width`` x ``height`` pixels of ``sample_aspect`` at the same display aspect with square
    pixels: wide pixels (16:9 DVD, 32:27) widen the frame, tall ones (4:3 DV, 8:9) make it taller, so no axis loses
    resolution. Even sizes, as 4:2:0 encoders need."""
    if sample_aspect >= 1:
        width = round(width * sample_aspect / 2) * 2
    else:
        height = round(height / sample_aspect / 2) * 2
    return width, height
