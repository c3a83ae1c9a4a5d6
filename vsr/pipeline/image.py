"""Upscaling a single image file (PNG, JPEG, ...): the `enhance` path for images and image-sequence folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr.errors import VsrError
from vsr.pipeline.enhance import EnhanceConfig, default_output_path
from vsr.pipeline.upscaler import Upscaler, fit_memory
from vsr.precision import choose_precision, resolve_device


def upscale_image(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
) -> Path:
    """Upscales one image file (PNG/JPEG/...) into another, written atomically."""
    from PIL import Image, UnidentifiedImageError

    cfg = cfg or EnhanceConfig()
    input_path = Path(input_path)
    scale = int(model.scale)
    output_path = Path(output_path) if output_path else default_output_path(input_path, scale)
    if not input_path.is_file():
        raise VsrError(f"no such file: {input_path}")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise VsrError(f"output {output_path} is the input; choose another -o")
    if output_path.exists() and not cfg.overwrite:
        raise VsrError(f"output file exists: {output_path} (use --overwrite to replace it)")
    try:
        with Image.open(input_path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise VsrError(f"not an image file: {input_path} ({exc})") from None
    device = resolve_device(cfg.device)
    precision = choose_precision(cfg.precision, device, getattr(model, "meta", None))
    upscaler = Upscaler(model, device, precision, cfg.tile, cfg.tile_pad)
    _, upscaler.tile, _ = fit_memory(upscaler.model, height=rgb.shape[0], width=rgb.shape[1], batch=1, tile=cfg.tile,
                                     tile_pad=cfg.tile_pad, device=device, value_bytes=upscaler.dtype.itemsize,
                                     limit=cfg.memory_limit)
    sr = upscaler(torch.from_numpy(rgb.copy())[None].to(device))[0].cpu().numpy()
    tmp = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}{output_path.suffix}")
    try:
        Image.fromarray(sr).save(tmp)
        os.replace(tmp, output_path)
    except OSError as exc:
        raise VsrError(f"cannot write {output_path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return output_path
