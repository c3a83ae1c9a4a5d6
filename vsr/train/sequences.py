"""The pieces `vsr train --frames N` adds to the training loop: the dataset of sequences, moving 4-D and 5-D batches
to the device, and validation on held-out runs of consecutive frames, played in order through the same runner
`vsr enhance` uses (so a recurrent model is scored with the state it carries)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import data, metrics
from vsr.data.sequences import find_runs
from vsr.models.runner import Upscaler
from vsr.precision import Precision

# Held-out runs are scored on their first VAL_FRAMES frames, centre crops of at most VAL_CROP HR pixels, at most
# VAL_RUNS runs (the longest): a few seconds on a CPU, and enough frames for a recurrent model to reach steady state.
VAL_FRAMES, VAL_CROP, VAL_RUNS = 10, 192, 6


def make_dataset(cfg, sources: list[str], degradation: data.Degradation, length: int) -> data.PairDataset:
    """Single frames (``cfg.frames == 1``) or sequences of ``cfg.frames`` consecutive frames."""
    if cfg.frames > 1:
        return data.SequenceDataset(sources, cfg.scale, cfg.frames, hr_crop=cfg.hr_crop, degradation=degradation,
                                    length=length, seed=cfg.seed, photo_share=cfg.photo_share)
    return data.PairDataset(sources, cfg.scale, hr_crop=cfg.hr_crop, degradation=degradation, length=length,
                            seed=cfg.seed, sample_by=cfg.sample_by)


def generator_param_groups(model: nn.Module, cfg) -> list[dict]:
    """The generator's parameters for its optimiser: one group, or with ``cfg.past_lr_scale`` != 1 and a model that
    has a past, two, the past's layers with ``lr_scale`` (the loop multiplies the learning rate by it). Fine-tuned
    from per-frame weights, the recurrent layers start at zero inside a converged network and learn slowly at its
    learning rate."""
    past = list(model.past_parameters()) if cfg.past_lr_scale != 1 and hasattr(model, "past_parameters") else []
    if not past:
        return [{"params": list(model.parameters())}]
    chosen = {id(p) for p in past}
    return [{"params": [p for p in model.parameters() if id(p) not in chosen]},
            {"params": past, "lr_scale": cfg.past_lr_scale}]


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the device; frame batches (4-D) channels_last, the layout oneDNN and cuDNN run convs fastest in
    (a sequence batch (N, T, C, H, W) has no such layout: the model takes one frame of it at a time)."""
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


def load_run(paths: list[Path], crop: int, scale: int) -> np.ndarray:
    """(T, H, W, 3) uint8: the frames of a run, centre-cropped to at most ``crop`` HR pixels a side, a multiple of
    ``scale``."""
    hr = np.stack([data.load_image(p) for p in paths])
    h, w = hr.shape[1:3]
    side_h, side_w = min(h, crop) // scale * scale, min(w, crop) // scale * scale
    top, left = (h - side_h) // 2, (w - side_w) // 2
    return np.ascontiguousarray(hr[:, top : top + side_h, left : left + side_w])


def evaluate_sequences(
    folder: str | Path,
    model: nn.Module,
    scale: int,
    degradation: data.Degradation,
    device: torch.device,
    precision: Precision,
    *,
    seed: int = 0,
    max_runs: int | None = None,
    on_image: Callable | None = None,
) -> dict | None:
    """PSNR/SSIM (Y) of ``model`` on held-out runs of consecutive frames, each degraded as one clip and upscaled in
    order from a fresh state; None when ``folder`` holds no run of ``VAL_FRAMES`` frames.

    Returns:
        ``{"psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "images"}`` (means over every frame), as
        `vsr.evaluate.evaluate_folder` does for images, and ``temporal_error_y`` / ``bicubic_temporal_error_y`` (RMS
        of (sr_t - sr_t-1) - (hr_t - hr_t-1) on Y, grey levels, as `vsr eval --video`); ``on_image(name, hr, lr, bicubic, sr)`` sees each run's last
        frame.
    """
    runs, _ = find_runs(data.list_images(folder), VAL_FRAMES)
    runs = sorted(runs, key=len, reverse=True)[: max_runs or VAL_RUNS]
    if not runs:
        return None
    upscaler = Upscaler(model, device, precision)
    rows, terr = [], []
    for i, run in enumerate(runs):
        hr = load_run(run[:VAL_FRAMES], VAL_CROP, scale)
        lr = degradation.degrade_clip(hr, scale, np.random.default_rng([seed, i]))
        upscaler.reset_state()
        sr = upscaler(torch.from_numpy(lr).to(device)).cpu().numpy()
        meters = (metrics.TemporalError(scale), metrics.TemporalError(scale))  # model, bicubic
        for t in range(len(hr)):
            bicubic = data.bicubic_upscale(lr[t], scale)
            psnr, ssim = metrics.psnr_ssim_y(sr[t], hr[t], scale)
            bic_psnr, bic_ssim = metrics.psnr_ssim_y(bicubic, hr[t], scale)
            rows.append((psnr, ssim, bic_psnr, bic_ssim))
            hr_y = metrics.rgb_to_y(hr[t])
            meters[0].update(metrics.rgb_to_y(sr[t]), hr_y)
            meters[1].update(metrics.rgb_to_y(bicubic), hr_y)
        terr.append((meters[0].rms, meters[1].rms))
        if on_image is not None:
            on_image(run[0].stem, hr[-1], lr[-1], data.bicubic_upscale(lr[-1], scale), sr[-1])
    model.train()  # the runner put the model in eval mode
    means = np.mean(rows, axis=0)
    # Every run has as many frame pairs and pixels: the RMS over all pairs is the root of the runs' mean squares.
    terr_rms = np.sqrt(np.mean(np.square(terr), axis=0))
    return {"psnr_y": float(means[0]), "ssim_y": float(means[1]), "bicubic_psnr_y": float(means[2]),
            "bicubic_ssim_y": float(means[3]), "images": len(rows), "temporal_error_y": float(terr_rms[0]),
            "bicubic_temporal_error_y": float(terr_rms[1])}
