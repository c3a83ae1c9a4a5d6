"""Upscaling a single image file (PNG, JPEG, WebP, ...): the `enhance` path for images and image-sequence folders.

The image is read with the same reader as training and evaluation (`vsr.data.read_image`): 16-bit stays 16-bit
through the model, EXIF orientation is applied, and an alpha channel is resized to the output alongside the colour
(antialiased bicubic: the models learnt colour, not masks) and written back where the output format holds it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import data, provenance
from vsr.atomic import atomic_write
from vsr.errors import VsrError
from vsr.models.runner import PEAK, Upscaler, resize_frames
from vsr.pipeline.plan import EnhanceConfig, default_output_path
from vsr.pipeline.worksize import choose_work_size
from vsr.pipeline.resize import output_size
from vsr.precision import Precision, choose_precision, resolve_device


def upscale_image(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
) -> Path:
    """Upscales one image file into another, written atomically; the output format follows its extension.

    Args:
        input_path: the image.
        output_path: where to write (default ``<stem>_x<scale><ext>`` beside the input); its extension picks the
            format (``photo.png -o photo.jpg`` writes a JPEG at ``cfg.quality``).
        model: a loaded vsr model.
        cfg: options (device, precision, tiling, output size, quality).

    Returns:
        The path written. What the output format could not keep (alpha in JPEG, 16 bits outside PNG) is warned
        about, one line each.
    """
    cfg = cfg or EnhanceConfig()
    input_path = Path(input_path)
    scale = int(model.scale)
    output_path = Path(output_path) if output_path else default_output_path(input_path, cfg.outscale or scale)
    if not input_path.is_file():
        raise VsrError(f"no such file: {input_path}")
    if output_path.suffix.lower() not in data.WRITABLE_EXTS:
        raise VsrError(f"cannot write an image to {output_path}: use one of {', '.join(sorted(data.WRITABLE_EXTS))}")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise VsrError(f"output {output_path} is the input; choose another -o")
    if output_path.exists() and not cfg.overwrite:
        raise VsrError(f"output file exists: {output_path} (use --overwrite to replace it)")
    picture = data.read_image(input_path)
    height, width = picture.rgb.shape[:2]
    out_w, out_h = output_size(width, height, scale, cfg.outscale, cfg.width, cfg.height)
    resized = (out_w, out_h) != (width * scale, height * scale)
    device = resolve_device(cfg.device)
    precision = choose_precision(cfg.precision, device, getattr(model, "meta", None))
    if picture.rgb.dtype != np.uint8 and precision.name == "bf16" and cfg.precision == "auto":
        precision = Precision("fp32", "fp32: bf16's 8-bit mantissa would round a 16-bit image to 8 bits")
    upscaler = Upscaler(model, device, precision, out_size=(out_w, out_h) if resized else None)
    work, _ = choose_work_size(upscaler.model, height=height, width=width, device=device,
                               value_bytes=upscaler.dtype.itemsize, sample_bytes=picture.rgb.itemsize, batch=1,
                               tile=cfg.tile, tile_pad=cfg.tile_pad, limit=cfg.memory_limit, graph=upscaler.graph)
    upscaler.tile, upscaler.tile_pad = work.tile, work.tile_pad
    rgb = upscaler(torch.from_numpy(picture.rgb.copy())[None].to(device))[0].cpu().numpy()
    alpha = None if picture.alpha is None else _resize_alpha(picture.alpha, out_w, out_h, device)
    out = data.Picture(rgb, alpha, picture.icc_profile)
    try:
        with atomic_write(output_path) as temp:
            notes = data.write_image(temp, out, quality=cfg.quality,
                                     tags=provenance.model_tags(model, upscaler.precision.name))
    except OSError as exc:
        raise VsrError(f"cannot write {output_path}: {exc.strerror or exc}") from None
    for note in notes:
        warnings.warn(note.replace(temp.name, output_path.name))
    return output_path


def _resize_alpha(alpha, width: int, height: int, device: torch.device):
    peak = PEAK[torch.uint8 if alpha.dtype.itemsize == 1 else torch.uint16]
    a = torch.from_numpy(alpha.copy()).to(device)[None, None].float().div_(peak)
    a = resize_frames(a, width, height).clamp_(0, 1).mul_(peak).round_()
    return a[0, 0].to(torch.uint8 if peak == 255 else torch.uint16).cpu().numpy()
