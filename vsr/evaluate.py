"""`vsr eval`: PSNR/SSIM of a model against bicubic, on a folder of HR images or on every frame of a video.

The protocol is the SR papers' (see `vsr.metrics`): HR mod-cropped to the scale, LR made by the same antialiased
bicubic downscale the trainer uses (`data.bicubic_downscale`) or by the realistic degradation seeded per image,
metrics on the BT.601 Y channel with `scale` pixels of border cropped. The model runs exactly as `vsr enhance`
runs it (`models.runner.Upscaler`: same precision, channels_last, uint8 in and out), so a precision's score here
is the quality `enhance` delivers in that precision.

A video is scored as footage: its frames reach the model in presentation order (a recurrent model carries its state
from one to the next, as in `vsr enhance`), its LR is made run by run as one recorder would make it, and beside
PSNR/SSIM comes the temporal error against the original (`metrics.TemporalError`). Images of a folder are unrelated,
so a recurrent model forgets its state before each one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import data, metrics, models, video
from vsr.errors import VsrError
from vsr.models.runner import Upscaler
from vsr.precision import Precision, choose_precision, resolve_device

# Called once per image (or frame) with name, HR, LR, bicubic and SR as uint8 HWC arrays; the trainer draws its
# sample grids from it.
ImageHook = Callable[[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "arch", None) or type(model).__name__.lower())


def _degrader(degrade: str | data.Degradation) -> data.Degradation:
    """The LR maker: a preset name ("bicubic" is the paper's downscale, "realistic") or a configured Degradation."""
    return data.Degradation(preset=degrade) if isinstance(degrade, str) else degrade


class _Runner:
    """Runs one model on uint8 LR arrays in one precision, the way `vsr enhance` runs it."""

    def __init__(self, model: nn.Module, scale: int, device: str | torch.device | None, precision: str | Precision):
        model_scale = int(getattr(model, "scale", scale))
        if model_scale != scale:
            raise VsrError(f"the model upscales x{model_scale}, but -s {scale} was asked for")
        if device is None:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.precision = (
            precision
            if isinstance(precision, Precision)
            else choose_precision(precision, self.device, getattr(model, "meta", None))
        )
        self.scale = scale
        # `-m bicubic` is the baseline itself: the protocol's bicubic (Pillow, a = -0.5, as MATLAB), not the Bicubic
        # model's F.interpolate (a = -0.75), so its row reproduces the published bicubic numbers.
        self.bicubic = isinstance(model, models.Bicubic)
        if self.bicubic:
            self.precision = Precision("fp32", "the bicubic baseline runs no network")
        self.upscaler = None if self.bicubic else Upscaler(model, self.device, self.precision)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """(N,h,w,3) or (h,w,3) uint8 LR -> same-rank uint8 SR, s times larger (models pad odd sizes themselves)."""
        if self.bicubic:
            if lr.ndim == 3:
                return data.bicubic_upscale(lr, self.scale)
            return np.stack([data.bicubic_upscale(x, self.scale) for x in lr])
        single = lr.ndim == 3
        x = torch.from_numpy(np.require(lr[None] if single else lr, requirements=["C", "W"])).to(self.device)
        sr = self.upscaler(x).cpu().numpy()
        if self.upscaler.precision.name != self.precision.name:  # the pipeline fell back to fp32 on a NaN/inf
            self.precision = self.upscaler.precision
        return sr[0] if single else sr

    def reset(self) -> None:
        """The next frames do not follow the last ones (a new image or clip): a recurrent model starts afresh."""
        if self.upscaler is not None:
            self.upscaler.reset_state()


def _scores(sr: np.ndarray, bicubic: np.ndarray, hr: np.ndarray, border: int, name: str) -> dict:
    try:
        psnr, ssim = metrics.psnr_ssim_y(sr, hr, border)
        bic_psnr, bic_ssim = metrics.psnr_ssim_y(bicubic, hr, border)
    except ValueError as exc:
        raise VsrError(f"{name}: {exc}") from None
    return {"name": name, "psnr": psnr, "ssim": ssim, "bicubic_psnr": bic_psnr, "bicubic_ssim": bic_ssim}


def _summary(model: nn.Module, runner: _Runner, scale: int, degrade, border: int, rows: list[dict]) -> dict:
    def mean(key: str) -> float:
        return float(np.mean([row[key] for row in rows]))

    return {
        "model": _model_name(model),
        "scale": scale,
        "degrade": degrade if isinstance(degrade, str) else getattr(degrade, "preset", "custom"),
        "device": str(runner.device),
        "precision": runner.precision.name,
        "precision_reason": runner.precision.reason,
        "border": border,
        "images": len(rows),
        "psnr_y": mean("psnr"),
        "ssim_y": mean("ssim"),
        "bicubic_psnr_y": mean("bicubic_psnr"),
        "bicubic_ssim_y": mean("bicubic_ssim"),
        "per_image": rows,
    }


def evaluate_folder(
    hr_dir: str | Path | list[Path],
    model: nn.Module,
    scale: int | None = None,
    degrade: str | data.Degradation = "bicubic",
    device: str | torch.device | None = "auto",
    precision: str | Precision = "auto",
    border: int | None = None,
    *,
    seed: int = 0,
    max_images: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_image: ImageHook | None = None,
) -> dict:
    """Scores a model against bicubic on every image of a folder of HR images.

    Args:
        hr_dir: folder of HR images (PNG/JPEG/BMP/...), e.g. Set5, or a list of image files.
        model: a loaded vsr model (`models.load_model`) or any module mapping [0,1] NCHW to `scale` times larger.
        scale: upscaling factor (default: `model.scale`); must match the model.
        degrade: "bicubic" (the paper protocol), "realistic", or a configured `data.Degradation`; the realistic
            one is seeded per image from `seed`, so two evaluations see the same LR images.
        device: "auto", "cpu", "cuda[:N]", a torch.device, or None for wherever the model's weights are.
        precision: "auto", "fp32", "bf16", "fp16" or a chosen `Precision`.
        border: pixels cropped from each side before scoring (default: the scale).
        seed: seed of the realistic degradation.
        max_images: score only the first N images (sorted by name).
        progress: called with 1 after each image.
        on_image: called with (name, hr, lr, bicubic, sr) uint8 arrays for each image.

    Returns:
        {"model", "scale", "degrade", "device", "precision", "precision_reason", "border", "images", "psnr_y",
        "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "seconds", "per_image": [{"name", "psnr", "ssim",
        "bicubic_psnr", "bicubic_ssim"}]}; means are over images.
    """
    if isinstance(hr_dir, (str, Path)):
        if not Path(hr_dir).is_dir():
            raise VsrError(f"no such folder: {hr_dir}")
        paths = data.list_images(hr_dir)
    else:
        paths = [Path(p) for p in hr_dir]
    paths = paths[:max_images]
    if not paths:
        raise VsrError(f"no images in {hr_dir}")
    scale = int(scale or model.scale)
    border = scale if border is None else border
    runner = _Runner(model, scale, device, precision)
    make_lr = _degrader(degrade)
    started = time.perf_counter()
    rows = []
    for index, path in enumerate(paths):
        hr = np.ascontiguousarray(metrics.mod_crop(data.load_image(path), scale))
        if min(hr.shape[:2]) < scale:
            raise VsrError(f"{path.name}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
        lr = make_lr(hr, scale, np.random.default_rng([seed, index]))
        bicubic = data.bicubic_upscale(lr, scale)
        runner.reset()
        sr = runner(lr)
        rows.append(_scores(sr, bicubic, hr, border, path.name))
        if on_image:
            on_image(path.name, hr, lr, bicubic, sr)
        if progress:
            progress(1)
    result = _summary(model, runner, scale, degrade, border, rows)
    result["seconds"] = time.perf_counter() - started
    return result


def evaluate_video(
    hr_video: str | Path,
    model: nn.Module,
    scale: int | None = None,
    degrade: str | data.Degradation = "bicubic",
    device: str | torch.device | None = "auto",
    precision: str | Precision = "auto",
    border: int | None = None,
    *,
    max_frames: int | None = None,
    batch_size: int = 4,
    run_frames: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Scores a model against bicubic on every frame of an HR video, with the temporal error against the original.

    Each frame is scored as an image of `evaluate_folder` (mod-crop, LR, Y channel, border). The frames reach the
    model in presentation order, `batch_size` at a time, so a recurrent model carries its state through the video.
    The LR video is made ``run_frames`` consecutive frames at a time by `data.Degradation.degrade_clip`: the
    realistic degradation draws one recorder per run (seeded by `seed` and the run's index) and codes the run as one
    piece of footage, so inter-frame prediction is real; bicubic downscales each frame.

    Temporal error ("temporal_error_y", the figure to compare): RMS on Y inside the border of
    (sr_t - sr_{t-1}) - (hr_t - hr_{t-1}), in grey levels; 0 means the output changes exactly as the original does,
    and it grows both for detail that flickers and for real motion the output blurs away. "flicker_y" is the older,
    secondary figure: the mean absolute value of the same difference.

    Args:
        hr_video: the HR (reference) video.
        model, scale, degrade, device, precision, border, seed: as `evaluate_folder`.
        max_frames: score only the first N frames.
        batch_size: frames per model call.
        run_frames: frames degraded together as one piece of footage.
        progress: called with the number of frames just scored.

    Returns:
        `evaluate_folder`'s dict with "frames" (= "images"), per-frame rows named frame_000000..., and
        "temporal_error_y", "bicubic_temporal_error_y", "flicker_y", "bicubic_flicker_y" (None for a one-frame video).
    """
    scale = int(scale or model.scale)
    border = scale if border is None else border
    if batch_size < 1 or run_frames < 1:
        raise VsrError("batch_size and run_frames must be at least 1")
    runner = _Runner(model, scale, device, precision)
    make_lr = _degrader(degrade)
    started = time.perf_counter()
    rows: list[dict] = []
    temporal = {"model": metrics.TemporalError(border), "bicubic": metrics.TemporalError(border)}
    runner.reset()
    for run_index, batch in enumerate(video.read_frames(hr_video, batch_size=run_frames)):
        frames = batch.frames if max_frames is None else batch.frames[: max_frames - len(rows)]
        height, width = frames.shape[1:3]
        hrs = np.ascontiguousarray(frames[:, : height - height % scale, : width - width % scale])
        if min(hrs.shape[1:3]) < scale:
            raise VsrError(f"{hr_video}: {width}x{height} is smaller than the scale {scale}")
        lrs = make_lr.degrade_clip(hrs, scale, np.random.default_rng([seed, run_index]))
        for first in range(0, len(hrs), batch_size):
            srs = runner(lrs[first : first + batch_size])
            for hr, lr, sr in zip(hrs[first : first + batch_size], lrs[first : first + batch_size], srs):
                bicubic = data.bicubic_upscale(lr, scale)
                rows.append(_scores(sr, bicubic, hr, border, f"frame_{len(rows):06d}"))
                hr_y = metrics.rgb_to_y(hr)
                temporal["model"].update(metrics.rgb_to_y(sr), hr_y)
                temporal["bicubic"].update(metrics.rgb_to_y(bicubic), hr_y)
            if progress:
                progress(len(srs))
        if max_frames is not None and len(rows) >= max_frames:
            break
    if not rows:
        raise VsrError(f"no frames decoded from {hr_video}")
    result = _summary(model, runner, scale, degrade, border, rows)
    result["video"] = str(hr_video)
    result["frames"] = len(rows)
    result["temporal_error_y"] = temporal["model"].rms
    result["bicubic_temporal_error_y"] = temporal["bicubic"].rms
    result["flicker_y"] = temporal["model"].flicker
    result["bicubic_flicker_y"] = temporal["bicubic"].flicker
    result["seconds"] = time.perf_counter() - started
    return result
