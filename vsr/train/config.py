"""The options of `vsr train`: TrainConfig, reading them from TOML, checking them and filling in the phase defaults,
the learning-rate schedule, and where validation images come from."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vsr import data, losses, models
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, cpu_bf16_capability

REPO = Path(__file__).resolve().parents[2]


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AMX or AVX-512-BF16); `vsr.precision.cpu_bf16_capability` decides."""
    return cpu_bf16_capability() is not None


@dataclass
class TrainConfig:
    """Every option of `vsr train`. None means "the phase's default", filled in by `resolve_config`."""

    # What to learn.
    phase: str = "mse"  # "mse": G alone on pixel MSE; "gan": G against the SRGAN discriminator, G from init_from
    data: list[str] = field(default_factory=list)  # image folders (e.g. `vsr prepare` output) or image files
    scale: int = 4
    arch: str = "srresnet"
    num_feat: int | None = None  # None: the architecture's default (64 for srresnet)
    num_block: int | None = None  # None: the architecture's default (16 for srresnet)
    d_num_feat: int = 64  # discriminator width (64 in the paper)
    # Data.
    hr_crop: int = 96
    sample_by: str = "image"  # "image": each image equally often; "area": each HR pixel equally often
    frames: int = 1  # > 1: sequences of that many consecutive frames (recurrent models; vsr.data.SequenceDataset)
    photo_share: float = 0.25  # with --frames: share of sequences made from photographs by a moving virtual camera
    temporal_weight: float = 0.0  # with --frames: weight of losses.temporal_difference_loss beside the per-frame MSE
    past_lr_scale: float = 1.0  # recurrent archs: the layers that read and write the past learn at lr x this
    batch_size: int = 16  # per process; the global batch is batch_size x processes
    degrade: str = "bicubic"  # "bicubic" (the paper) or "realistic" (blur, noise, JPEG, H.264)
    degrade_args: dict = field(default_factory=dict)  # data.Degradation fields: blur_sigma=[lo, hi], crf=[lo, hi], ...
    workers: int = 4
    # Optimisation.
    steps: int = 100_000
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    lr_decay_at: float | None = None  # fraction of steps after which lr *= lr_decay; None: mse never, gan 0.5
    lr_decay: float = 0.1
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema_decay: float = 0.999  # 0 = no EMA (export and validate the raw G)
    # GAN phase.
    mse_weight: float | None = None  # None: 0 with the VGG loss (SRGAN-VGG54), else 1 (SRGAN-MSE; effnet + pixel)
    perceptual: str = "vgg"  # "vgg" (SRGAN's VGG19 loss), "effnet" (EfficientNet-Lite0 features) or "none"
    perceptual_scale: float = 1.0  # multiplies the perceptual loss (1: the paper's VGG scaling, effnet at its size)
    vgg_layer: str = "relu5_4"
    perceptual_weights: str | None = None  # the network's state dict; default torch hub cache (vgg), package (effnet)
    adv_weight: float = 1e-3
    sharpen_gt: float = 0.0  # unsharp-mask amount of the pixel/perceptual target (Real-ESRGAN's USM GT: 0.5); 0: off
    init_from: str | None = None  # MSE-phase ckpt.pt or weights file to start G from
    # Bookkeeping.
    run: str = "runs/train"
    val_dir: str | None = None  # None: the data's own holdout/ (vsr prepare --holdout), else no validation
    val_every: int = 500
    sample_every: int | None = None  # None: = val_every
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: fp16 + GradScaler on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32
    compile: bool = False
    resume: bool = False
    export: str | None = None  # write EMA weights here at the end (models.save_weights format)


def config_from_dict(values: dict) -> TrainConfig:
    """A TrainConfig from a dict (a TOML file, a checkpoint's config, CLI flags); unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    if "vgg_weights" in values:  # the option's name before --perceptual effnet (older runs' config.json)
        values.setdefault("perceptual_weights", values.pop("vgg_weights"))
    unknown = sorted(set(values) - names)
    if unknown:
        raise VsrError(f"unknown training option(s): {', '.join(unknown)}")
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return TrainConfig(**values)


def read_config_file(path: str | Path) -> dict:
    """Options from a TOML file: top-level keys, or a [train] table; names as the flags (dashes or underscores)."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise VsrError(f"no such config file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise VsrError(f"cannot parse {path}: {exc}") from None
    values = values.get("train", values)
    config_from_dict(values)  # validate the names now, with the file named in the error
    return values


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Checks the options and fills in the phase defaults; the result is what config.json records."""
    if cfg.phase not in ("mse", "gan"):
        raise VsrError(f"unknown phase {cfg.phase!r}; use mse or gan")
    if cfg.perceptual not in losses.PERCEPTUAL_LOSSES:
        raise VsrError(f"unknown perceptual loss {cfg.perceptual!r}; use {', '.join(losses.PERCEPTUAL_LOSSES)}")
    if cfg.precision not in PRECISIONS:
        raise VsrError(f"unknown precision {cfg.precision!r}; use one of {', '.join(PRECISIONS)}")
    if not cfg.data:
        raise VsrError("no training data: pass --data FOLDER (image folders or `vsr prepare` output)")
    if cfg.scale not in models.SCALES:
        raise VsrError(f"scale must be one of {', '.join(map(str, models.SCALES))}, got {cfg.scale}")
    if cfg.hr_crop <= 0 or cfg.hr_crop % cfg.scale:
        raise VsrError(f"--hr-crop ({cfg.hr_crop}) must be a positive multiple of the scale ({cfg.scale})")
    for name in ("batch_size", "steps", "val_every", "ckpt_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise VsrError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.frames < 1:
        raise VsrError(f"--frames must be at least 1, got {cfg.frames}")
    if cfg.temporal_weight < 0 or (cfg.temporal_weight > 0 and cfg.frames < 2):
        raise VsrError(f"--temporal-weight {cfg.temporal_weight:g} needs --frames 2 or more and a weight >= 0")
    if cfg.frames > 1 and cfg.phase == "gan":
        raise VsrError("--frames with --phase gan is not built yet: train the recurrent model with --phase mse")
    if cfg.past_lr_scale <= 0:
        raise VsrError(f"--past-lr-scale must be positive, got {cfg.past_lr_scale}")
    if not 0 <= cfg.photo_share <= 1:
        raise VsrError(f"--photo-share must be in [0, 1], got {cfg.photo_share}")
    if cfg.workers < 0:
        raise VsrError(f"--workers must be 0 or more, got {cfg.workers}")
    if not 0 <= cfg.ema_decay < 1:
        raise VsrError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.lr_decay_at is not None and not 0 < cfg.lr_decay_at <= 1:
        raise VsrError(f"--lr-decay-at is a fraction of the steps in (0, 1], got {cfg.lr_decay_at}")
    gan = cfg.phase == "gan"
    return dataclasses.replace(
        cfg,
        data=[str(d) for d in cfg.data],
        # The paper's GAN schedule: 1e-4 for the first half, 1e-5 for the second. The MSE phase stays constant.
        lr_decay_at=cfg.lr_decay_at if cfg.lr_decay_at is not None else (0.5 if gan else 1.0),
        # SRGAN-VGG54 has no pixel term; without the VGG loss the paper's SRGAN-MSE keeps MSE at weight 1 (and so does
        # effnet: its features start at stride 4, the pixel term keeps colours and flat areas anchored).
        mse_weight=1.0 if not gan else cfg.mse_weight if cfg.mse_weight is not None else
        (0.0 if cfg.perceptual == "vgg" else 1.0),
        perceptual=cfg.perceptual if gan else "none",
        sample_every=cfg.sample_every or cfg.val_every,
        degrade_args=dict(cfg.degrade_args),
    )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step`: constant, times `lr_decay` from `lr_decay_at * steps` on (a pure function)."""
    return cfg.lr * (cfg.lr_decay if step >= cfg.lr_decay_at * cfg.steps else 1.0)


def split_validation(cfg: TrainConfig) -> tuple[list[str], Path | None]:
    """Training sources and validation images: --val, else the data's own held-out frames (`vsr prepare --holdout`
    writes OUT/holdout beside OUT/train: found from --data OUT or --data OUT/train), else none."""
    if cfg.val_dir:
        if not Path(cfg.val_dir).is_dir():
            raise VsrError(f"no such validation folder: {cfg.val_dir}")
        return cfg.data, Path(cfg.val_dir)
    for folder in map(Path, cfg.data):
        candidates = [folder / "holdout"] + ([folder.parent / "holdout"] if folder.name == "train" else [])
        for holdout in candidates:
            if holdout.is_dir() and data.list_images(holdout):
                return cfg.data, holdout
    return cfg.data, None
