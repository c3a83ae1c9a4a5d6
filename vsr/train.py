"""`vsr train`: SRResNet with MSE (`--phase mse`), then SRGAN (`--phase gan`), as Ledig et al. 2017.

`train(cfg)` is one loop that reads top to bottom (nanoGPT's train.py): the learning rate is a pure function of the
step, autocast is chosen once, the GAN step follows BasicSR's SRGANModel (D frozen for the G step; G loss =
mse_weight * pixel + perceptual + adv_weight * adversarial; then D on gt and on sr.detach()). Master weights, the
optimizer and the EMA of G stay fp32 whatever `--precision` says. A checkpoint is one dict you can resume from:
the model is rebuilt from its `model_args`, never from today's defaults.

Run folder: config.json (the resolved config), log.jsonl (one JSON object per log step and per validation),
ckpt.pt, curves.png, samples/step_XXXXXX.png (LR | bicubic | SR | HR), degradation_example.png (realistic only).
Under `torchrun` every process trains (DDP, NCCL on CUDA, gloo on CPU); only rank 0 writes or validates.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import os
import random
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from tqdm import tqdm

from vsr import data, evaluate, losses, models
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, autocast, choose_precision, cpu_bf16_capability, resolve_device

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VAL_DIR = REPO.parent / "shared" / "data" / "benchmarks" / "Set5"
CKPT_VERSION = 1


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
    mse_weight: float | None = None  # None: 0 with the VGG loss (SRGAN-VGG54), 1 without (SRGAN-MSE)
    perceptual: str = "vgg"  # "vgg" or "none"
    vgg_layer: str = "relu5_4"
    vgg_weights: str | None = None  # torchvision VGG19 state dict; default the torch hub cache
    adv_weight: float = 1e-3
    init_from: str | None = None  # MSE-phase ckpt.pt or weights file to start G from
    # Bookkeeping.
    run: str = "runs/train"
    val_dir: str | None = None  # None: ../shared/data/benchmarks/Set5 beside the repo, else a holdout split
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


def read_checkpoint_config(run: str | Path) -> dict:
    """The config a run was started with (from its ckpt.pt), for `--resume` to start from."""
    return dict(_load_checkpoint(Path(run) / "ckpt.pt")["config"])


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Checks the options and fills in the phase defaults; the result is what config.json records."""
    if cfg.phase not in ("mse", "gan"):
        raise VsrError(f"unknown phase {cfg.phase!r}; use mse or gan")
    if cfg.perceptual not in ("vgg", "none"):
        raise VsrError(f"unknown perceptual loss {cfg.perceptual!r}; use vgg or none")
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
        # SRGAN-VGG54 has no pixel term; without the VGG loss the paper's SRGAN-MSE keeps MSE at weight 1.
        mse_weight=1.0 if not gan else cfg.mse_weight if cfg.mse_weight is not None else
        (0.0 if cfg.perceptual == "vgg" else 1.0),
        perceptual=cfg.perceptual if gan else "none",
        sample_every=cfg.sample_every or cfg.val_every,
        degrade_args=dict(cfg.degrade_args),
    )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step`: constant, times `lr_decay` from `lr_decay_at * steps` on (a pure function)."""
    return cfg.lr * (cfg.lr_decay if step >= cfg.lr_decay_at * cfg.steps else 1.0)


class Ema:
    """Exponential moving average of a model's weights (and BN statistics), kept in fp32.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's num_updates rule): with a
    flat 0.999 the average would still be 74% the random init after 300 steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats = [(e, m) for e, m in self._pairs if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [m.float() for _, m in floats], 1 - decay)
        for e, m in self._pairs:
            if not e.is_floating_point():
                e.copy_(m)  # BN's num_batches_tracked

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


class _Batches:
    """Endless training batches, pass after pass over the loader, with the position a checkpoint records.

    The order of pass `epoch` is a pure function of (seed, epoch): the loader's shuffle generator is re-seeded at
    each pass (DistributedSampler: set_epoch). So a resumed run finds its place without replaying the data:
    with workers=0 it skips the consumed batches' indices without loading them; with workers, whose augmentation
    streams live in processes that no checkpoint can hold, it starts the next pass (same distribution, new draws).
    """

    def __init__(self, loader, seed: int, epoch: int = 0, offset: int = 0):
        self.loader, self.seed = loader, seed
        self.epoch, self.offset = epoch, offset
        self._start(skip=offset)

    def _start(self, skip: int = 0) -> None:
        if skip and self.loader.num_workers > 0:
            self.epoch, self.offset, skip = self.epoch + 1, 0, 0
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(self.epoch)
        if self.loader.generator is not None:
            self.loader.generator.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        self._it = iter(self.loader)
        indices = getattr(self._it, "_sampler_iter", None)  # private, but skipping through it loads nothing
        for _ in range(skip):
            if indices is not None:
                next(indices)
            else:
                next(self._it)  # the slow way: load and drop (the dataset's RNG is restored afterwards)

    def __next__(self):
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.offset = self.epoch + 1, 0
            self._start()
            batch = next(self._it)
        self.offset += 1
        return batch


class _GracefulStop:
    """The first Ctrl-C asks the loop to stop at the end of the current step; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun (WORLD_SIZE > 1) also joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available() or device_name.startswith("cuda:")
    if cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


def _save_checkpoint(path: Path, ckpt: dict) -> None:
    """torch.save to a temp file beside `path`, then rename: a crash mid-write never leaves a broken ckpt.pt."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise VsrError(f"no checkpoint {path} (start without --resume, or point --run at an existing run)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on damaged files
        raise VsrError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CKPT_VERSION or "model_args" not in ckpt:
        raise VsrError(f"{path} is not a vsr training checkpoint")
    return ckpt


def _rng_states() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _dataset_rng(dataset) -> str | None:
    """The main-process augmentation generator of a PairDataset (workers=0), as JSON; None if it has none yet."""
    rng = getattr(dataset, "_rng", None)
    return json.dumps(rng.bit_generator.state) if rng is not None else None


def _set_dataset_rng(dataset, state: str | None) -> None:
    if state is None or not hasattr(dataset, "_rng_key"):
        return
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(state)
    # PairDataset re-seeds when (pid, torch.initial_seed()) changes; claim this process so it keeps ours.
    dataset._rng, dataset._rng_key = rng, (os.getpid(), torch.initial_seed())


def _initial_generator(path: str, arch: str, scale: int) -> tuple[dict, dict]:
    """Model args and state dict to start the GAN phase's G from: a training ckpt.pt (its EMA) or a weights file."""
    ckpt = None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a checkpoint: load_weights_file gives the one-line error for bad files
        pass
    if isinstance(ckpt, dict) and ckpt.get("version") == CKPT_VERSION and "model_args" in ckpt:
        model_args = ckpt["model_args"]
        state = ckpt["ema"]["module"] if ckpt.get("ema") else ckpt["G"]
    else:
        file_arch, args, state, _ = models.load_weights_file(path, arch)
        model_args = {"arch": file_arch, "args": {**args, "scale": args.get("scale", scale)}}
    if model_args["args"].get("scale") != scale:
        raise VsrError(f"--init-from {path} is a x{model_args['args'].get('scale')} model, not x{scale}")
    return model_args, state


def _split_validation(cfg: TrainConfig) -> tuple[list[str], list[Path] | Path | None]:
    """Training sources and validation images: --val-dir, else Set5 beside the repo, else a `holdout/` folder in
    the data (`vsr prepare --holdout`), else every tenth training image (at most 10) held out."""
    if cfg.val_dir:
        if not Path(cfg.val_dir).is_dir():
            raise VsrError(f"no such validation folder: {cfg.val_dir}")
        return cfg.data, Path(cfg.val_dir)
    if DEFAULT_VAL_DIR.is_dir():
        return cfg.data, DEFAULT_VAL_DIR
    for folder in cfg.data:
        if (Path(folder) / "holdout").is_dir() and data.list_images(Path(folder) / "holdout"):
            return cfg.data, Path(folder) / "holdout"
    images = [p for folder in cfg.data for p in data.list_images(folder, exclude=("holdout",))]
    if len(images) < 2:
        return cfg.data, None
    held = images[9::10][:10] or images[-1:]
    return [str(p) for p in images if p not in held], held


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Trains a model as `cfg` says, writing everything to `cfg.run`.

    Args:
        cfg: the options (see TrainConfig); phase defaults are filled in by `resolve_config`.
        progress: show a tqdm bar (rank 0 only).

    Returns:
        {"step", "run", "checkpoint", "val" (last validation dict or None), "export" (path or None), "interrupted"}.

    Raises:
        VsrError: bad options, missing data or VGG weights, a run folder that already holds a checkpoint without
            --resume, an unreadable checkpoint.
    """
    cfg = resolve_config(cfg)
    rank, world, device = _init_distributed(cfg.device)
    try:
        return _train(cfg, rank, world, device, progress)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device, progress: bool) -> dict:
    gan, master = cfg.phase == "gan", rank == 0
    run = Path(cfg.run)
    ckpt_path = run / "ckpt.pt"
    if not cfg.resume and ckpt_path.exists():
        raise VsrError(f"{run} already holds a checkpoint; pass --resume to continue it, or choose another --run")
    # The VGG file is checked before anything slow happens, so a missing one stops the run at once.
    perceptual = losses.PerceptualLoss(cfg.vgg_weights, layer=cfg.vgg_layer) if cfg.perceptual == "vgg" else None
    ckpt = _load_checkpoint(ckpt_path) if cfg.resume else None
    if ckpt and ckpt["config"]["phase"] != cfg.phase:
        raise VsrError(f"{ckpt_path} is a {ckpt['config']['phase']}-phase run; resume it with --phase "
                       f"{ckpt['config']['phase']} (or start the GAN phase in a new --run with --init-from)")

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # same on every rank: identical initial weights (DDP broadcasts them anyway)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: cuDNN's autotuned kernels pay off
    precision = choose_precision(cfg.precision, device)
    ctx = autocast(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")

    # Models. G's architecture comes from the checkpoint (resume), the MSE run (GAN phase), or the flags.
    init_state = None
    if ckpt:
        model_args = ckpt["model_args"]
    elif cfg.init_from:
        model_args, init_state = _initial_generator(cfg.init_from, cfg.arch, cfg.scale)
    else:
        args = {"scale": cfg.scale}
        args.update({k: v for k, v in (("num_feat", cfg.num_feat), ("num_block", cfg.num_block)) if v is not None})
        model_args = {"arch": cfg.arch, "args": args}
    for name in ("num_feat", "num_block"):
        asked, built = getattr(cfg, name), model_args["args"].get(name)
        if asked is not None and built is not None and asked != built:
            source = "the checkpoint" if ckpt else f"--init-from {cfg.init_from}"
            raise VsrError(f"--{name.replace('_', '-')} {asked} does not match {source}, which has {built}")
    if gan and not cfg.init_from and not ckpt and master:
        _log("Warning: --phase gan without --init-from starts G from random weights (the paper starts from SRResNet)")
    raw_g = models.build_model(model_args["arch"], **model_args["args"])
    if not any(p.requires_grad for p in raw_g.parameters()):
        raise VsrError(f"model {model_args['arch']} has no weights to train")
    if init_state is not None:
        try:
            raw_g.load_state_dict(init_state)
        except RuntimeError as exc:
            raise VsrError(f"--init-from {cfg.init_from} does not fit {model_args}: {str(exc).splitlines()[0]}")
    d_args = {"num_feat": cfg.d_num_feat} if not ckpt else ckpt["d_args"]
    raw_d = models.Discriminator(**d_args) if gan else None
    # channels_last: the layout oneDNN and cuDNN run convs fastest in, bf16/fp16 especially.
    raw_g.to(device, memory_format=torch.channels_last).train()
    if raw_d is not None:
        raw_d.to(device, memory_format=torch.channels_last).train()
    if perceptual is not None:
        perceptual.to(device, memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(raw_g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(raw_d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)) if gan else None
    ema = Ema(raw_g, cfg.ema_decay) if cfg.ema_decay > 0 else None

    # Data.
    train_sources, val = _split_validation(cfg)
    # config.json records what was actually built and validated on, not only what was asked.
    cfg = dataclasses.replace(
        cfg, arch=model_args["arch"], num_feat=model_args["args"].get("num_feat", cfg.num_feat),
        num_block=model_args["args"].get("num_block", cfg.num_block),
        val_dir=str(val) if isinstance(val, Path) else cfg.val_dir,
    )
    try:
        ranges = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.degrade_args.items()}
        degradation = data.Degradation(preset=cfg.degrade, **ranges)
    except TypeError as exc:
        raise VsrError(f"bad degradation option: {exc}") from None
    n_images = sum(len(data.list_images(s, exclude=("holdout",))) for s in train_sources)
    # At least 100 steps per pass, so small folders (T91: 91 images) do not restart the loader every 5 steps.
    dataset = data.PairDataset(train_sources, cfg.scale, hr_crop=cfg.hr_crop, degradation=degradation,
                               length=max(n_images, 100 * cfg.batch_size * world), seed=cfg.seed)
    loader = data.make_loader(dataset, cfg.batch_size, cfg.workers, distributed=world > 1, seed=cfg.seed)

    step, last_val = 0, None
    if ckpt:
        raw_g.load_state_dict(ckpt["G"])
        opt_g.load_state_dict(ckpt["opt_g"])
        if gan:
            raw_d.load_state_dict(ckpt["D"])
            opt_d.load_state_dict(ckpt["opt_d"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step, last_val = ckpt["step"], ckpt.get("val")
        _set_rng_states(ckpt["rng"])
    batches = _Batches(loader, cfg.seed, *((ckpt["data"]["epoch"], ckpt["data"]["offset"]) if ckpt else (0, 0)))
    if ckpt and world == 1 and cfg.workers == 0:
        _set_dataset_rng(dataset, ckpt["data"].get("dataset_rng"))

    model_g, model_d = raw_g, raw_d
    if world > 1:
        model_g = nn.parallel.DistributedDataParallel(raw_g, device_ids=[device.index] if device.type == "cuda" else None)
        if gan:
            model_d = nn.parallel.DistributedDataParallel(raw_d, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model_g = torch.compile(model_g)

    log_path = run / "log.jsonl"
    if master:
        (run / "samples").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        if ckpt:
            _truncate_log(log_path, step)  # lines written after the checkpoint belong to steps we redo
        elif log_path.exists():
            log_path.unlink()
        if cfg.degrade == "realistic" and not ckpt:
            _degradation_example(dataset, degradation, cfg, run / "degradation_example.png")
        n_params = sum(p.numel() for p in raw_g.parameters())
        _log(
            f"train {cfg.phase}: {model_args['arch']} x{cfg.scale} {model_args['args']} ({n_params / 1e6:.2f} M params)"
            f" on {device}{f' x{world}' if world > 1 else ''}, {precision.name} ({precision.reason}); "
            f"{len(dataset.paths)} training images, {cfg.degrade} LR; validation: {_describe(val)}; run: {run}"
            + (f"; resuming at step {step}" if ckpt else "")
        )

    def validate(max_images=None, samples=False) -> dict | None:
        """PSNR/SSIM on the validation images with the EMA model (rank 0); optionally a sample grid."""
        if val is None:
            return None
        net = ema.module if ema is not None else raw_g
        shown = []
        keep = (lambda name, hr, lr, bic, sr: shown.append((hr, lr, bic, sr)) if len(shown) < 3 else None)
        result = evaluate.evaluate_folder(val, net, cfg.scale, degradation, device, precision,
                                          max_images=max_images, on_image=keep if samples else None)
        raw_g.train()  # the evaluator put G in eval mode when it is the model validated (no EMA)
        if samples:
            _sample_grid(shown, cfg.scale, step, run / "samples" / f"step_{step:06d}.png")
        return result

    def checkpoint() -> None:
        _save_checkpoint(ckpt_path, {
            "version": CKPT_VERSION,
            "model_args": model_args,
            "d_args": d_args if gan else None,
            "config": dataclasses.asdict(cfg),
            "step": step,
            "G": raw_g.state_dict(),
            "D": raw_d.state_dict() if gan else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict() if gan else None,
            "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": _rng_states(),
            "data": {"epoch": batches.epoch, "offset": batches.offset, "dataset_rng": _dataset_rng(dataset)},
            "val": last_val,
            "precision": precision.name,
        })

    def record_val(result: dict) -> None:
        nonlocal last_val
        last_val = {k: result[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "images")}
        _append_log(log_path, {"step": step, "val": last_val})
        _log(f"step {step}: validation PSNR {last_val['psnr_y']:.2f} dB, SSIM {last_val['ssim_y']:.4f} "
             f"(bicubic {last_val['bicubic_psnr_y']:.2f} dB, {last_val['bicubic_ssim_y']:.4f})")

    if master and not ckpt and val is not None:
        record_val(validate(samples=True))  # the starting point the curve is compared against

    if master and ckpt and step >= cfg.steps:
        _log(f"{run} is already at step {step} (--steps {cfg.steps}): nothing to train; raise --steps to go on")
    bar = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True, disable=not (master and progress))
    running: dict[str, torch.Tensor] = {}
    window, window_start = 0, time.perf_counter()
    interrupted = False
    with _GracefulStop() as stop:
        try:
            while step < cfg.steps:
                lr = lr_at(step, cfg)
                for opt in (opt_g, opt_d) if gan else (opt_g,):
                    for group in opt.param_groups:
                        group["lr"] = lr
                lq, gt = next(batches)
                lq = lq.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                gt = gt.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)

                # G step. D is frozen so the adversarial term trains G only; it is called unwrapped (no DDP hooks
                # for parameters that get no gradient here).
                if gan:
                    raw_d.requires_grad_(False)
                with ctx:
                    sr = model_g(lq)
                    l_pix = F.mse_loss(sr.float(), gt)
                    named = {"pix": l_pix}
                    l_g = cfg.mse_weight * l_pix if gan else l_pix
                    if perceptual is not None:
                        named["percep"] = perceptual(sr, gt)
                        l_g = l_g + named["percep"]
                    if gan:
                        named["adv"] = losses.adversarial_loss(raw_d(sr).float(), True)
                        l_g = l_g + cfg.adv_weight * named["adv"]
                        named["g_total"] = l_g
                opt_g.zero_grad(set_to_none=True)
                scaler.scale(l_g).backward()
                if cfg.grad_clip > 0:
                    scaler.unscale_(opt_g)
                    nn.utils.clip_grad_norm_(raw_g.parameters(), cfg.grad_clip)
                scaler.step(opt_g)

                # D step: real HR patches against this step's SR (detached), one backward for both terms.
                if gan:
                    raw_d.requires_grad_(True)
                    with ctx:
                        named["d_real"] = losses.adversarial_loss(model_d(gt).float(), True)
                        named["d_fake"] = losses.adversarial_loss(model_d(sr.detach()).float(), False)
                    opt_d.zero_grad(set_to_none=True)
                    scaler.scale(named["d_real"] + named["d_fake"]).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(opt_d)
                        nn.utils.clip_grad_norm_(raw_d.parameters(), cfg.grad_clip)
                    scaler.step(opt_d)
                scaler.update()
                if ema is not None:
                    ema.update()
                step += 1
                bar.update(1)
                for name, value in named.items():
                    running[name] = running.get(name, 0.0) + value.detach().float()
                window += 1

                last = step == cfg.steps
                if world > 1 and (step % cfg.log_every == 0 or last):
                    # Every rank must leave the loop at the same step, or the others hang in their next all-reduce.
                    flag = torch.tensor([float(stop.requested)], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stop.requested = bool(flag.item())
                if master and (step % cfg.log_every == 0 or last or stop.requested):
                    seconds = time.perf_counter() - window_start
                    means = {k: round((v / window).item(), 6) for k, v in running.items()}  # .item(): a sync point
                    _append_log(log_path, {"step": step, "lr": lr, "losses": means, "it_s": round(window / seconds, 3)})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                    running, window = {}, 0
                if master and (step % cfg.val_every == 0 or last):
                    record_val(validate(samples=step % cfg.sample_every == 0 or last))
                elif master and step % cfg.sample_every == 0:
                    validate(max_images=3, samples=True)
                if master and (step % cfg.val_every == 0 or last):
                    _draw_curves(log_path, run / "curves.png")
                if master and (step % cfg.ckpt_every == 0 or last):
                    checkpoint()
                if step % cfg.log_every == 0 or last:
                    window_start = time.perf_counter()  # it/s counts training, not validation or checkpoints
                if stop.requested and (world == 1 or step % cfg.log_every == 0):
                    interrupted = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C, mid-step: keep what the completed steps learned
            interrupted = True
    bar.close()
    if interrupted:
        if master:
            checkpoint()
            _draw_curves(log_path, run / "curves.png")
            _log(f"interrupted at step {step}: checkpoint saved to {ckpt_path}; continue with --resume")
        return {"step": step, "run": str(run), "checkpoint": str(ckpt_path), "val": last_val, "export": None,
                "interrupted": True}
    exported = None
    if master and cfg.export:
        exported = str(export_weights(ckpt_path, cfg.export))
        _log(f"exported EMA weights to {exported}")
    return {"step": step, "run": str(run), "checkpoint": str(ckpt_path), "val": last_val, "export": exported,
            "interrupted": False}


def _describe(val) -> str:
    if val is None:
        return "none (no --val-dir, no Set5 beside the repo, too few images to hold out)"
    if isinstance(val, list):
        return f"{len(val)} held-out training images"
    return str(val)


def export_weights(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Writes a checkpoint's EMA weights (the raw G's without EMA) as a `models.save_weights` file.

    `vsr enhance --weights OUT` loads it, and so does `-m NAME` when OUT is weights/NAME_x<scale>.pt.

    Returns:
        The path written.
    """
    ckpt = _load_checkpoint(Path(ckpt_path))
    model_args = ckpt["model_args"]
    model = models.build_model(model_args["arch"], **model_args["args"])
    model.load_state_dict(ckpt["ema"]["module"] if ckpt.get("ema") else ckpt["G"])
    cfg = ckpt["config"]
    val = ckpt.get("val") or {}
    meta = {
        "trained_steps": ckpt["step"],
        "phase": cfg["phase"],
        "degrade": cfg["degrade"],
        "degrade_args": cfg["degrade_args"],
        "data": cfg["data"],
        "val_dir": cfg["val_dir"] or None,
        "val_psnr_y": val.get("psnr_y"),
        "val_ssim_y": val.get("ssim_y"),
        "precision": ckpt.get("precision"),
        "perceptual": cfg["perceptual"],
        "mse_weight": cfg["mse_weight"],
        "adv_weight": cfg["adv_weight"] if cfg["phase"] == "gan" else None,
        "ema_decay": cfg["ema_decay"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    models.save_weights(model, out_path, arch=model_args["arch"], args=model_args["args"], meta=meta)
    return out_path


# ------------------------------------------------------------------------------------------- run-folder pictures


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def _nearest_up(img: np.ndarray, factor: int) -> np.ndarray:
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


def _grid(rows: list[list[np.ndarray]], labels: list[str], path: Path) -> None:
    """Images (all the same size) in rows, a label over each column, white gaps; written as PNG."""
    gap, head = 4, 16
    zoom = math.ceil(96 / rows[0][0].shape[1])  # small crops are enlarged (nearest) so the labels fit
    if zoom > 1:
        rows = [[_nearest_up(img, zoom) for img in row] for row in rows]
    h, w = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (len(labels) * (w + gap) + gap, head + len(rows) * (h + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, label in enumerate(labels):
        draw.text((gap + c * (w + gap), 2), label, fill="black", font=font)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas.paste(Image.fromarray(img), (gap + c * (w + gap), head + gap + r * (h + gap)))
    canvas.save(path)


def _center(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def _sample_grid(shown: list, scale: int, step: int, path: Path) -> None:
    """LR (nearest) | bicubic | SR | HR for up to three validation images, centre squares of at most 192 px."""
    if not shown:
        return
    side = min(min(hr.shape[:2]) for hr, *_ in shown)
    side = min(side, 48 * scale) // scale * scale
    rows = []
    for hr, lr, bicubic, sr in shown:
        lr_up = _nearest_up(lr, scale)
        rows.append([_center(img, side) for img in (lr_up, bicubic, sr, hr)])
    _grid(rows, ["LR (nearest)", "bicubic", f"SR step {step}", "HR"], path)


def _degradation_example(dataset, degradation, cfg: TrainConfig, path: Path) -> None:
    """HR | bicubic LR | realistic LR (both nearest-upscaled) from the first training image, seeded by the run."""
    hr = data.load_image(dataset.paths[0])
    side = min(min(hr.shape[:2]), 64 * cfg.scale) // cfg.scale * cfg.scale
    hr = np.ascontiguousarray(_center(hr, side))
    bicubic = _nearest_up(data.bicubic_downscale(hr, cfg.scale), cfg.scale)
    realistic = _nearest_up(degradation(hr, cfg.scale, np.random.default_rng(cfg.seed)), cfg.scale)
    _grid([[hr, bicubic, realistic]], ["HR", "bicubic LR", "realistic LR"], path)


def _draw_curves(log_path: Path, out_path: Path) -> None:
    """curves.png from log.jsonl: one panel per loss (log scale), one for validation PSNR against bicubic's."""
    if not log_path.exists():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    series: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        for name, value in rec.get("losses", {}).items():
            if value > 0 and math.isfinite(value):
                series.setdefault(name, []).append((rec["step"], value))
    psnr = [(r["step"], r["val"]["psnr_y"]) for r in records if "val" in r]
    bicubic = [(r["step"], r["val"]["bicubic_psnr_y"]) for r in records if "val" in r]
    panels = [(f"{name} loss (log10)", [pts], True) for name, pts in series.items()]
    if psnr:
        panels.append(("validation PSNR-Y dB (grey: bicubic)", [psnr, bicubic], False))
    if not panels:
        return
    pw, ph, cols = 420, 240, 2
    rows = math.ceil(len(panels) / cols)
    canvas = Image.new("RGB", (pw * min(cols, len(panels)), ph * rows), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, lines, log) in enumerate(panels):
        _panel(draw, (i % cols) * pw, (i // cols) * ph, pw, ph, title, lines, log)
    tmp = out_path.with_name(f".{out_path.name}.partial.png")
    canvas.save(tmp)
    os.replace(tmp, out_path)


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, w: int, h: int, title: str, lines: list, log: bool) -> None:
    """One line plot: title, axes box, min/max ticks on both axes, the first line black, the others grey."""
    font = ImageFont.load_default()
    left, right, top, bottom = x0 + 60, x0 + w - 12, y0 + 22, y0 + h - 26
    draw.text((x0 + 8, y0 + 4), title, fill="black", font=font)
    draw.rectangle((left, top, right, bottom), outline="black")
    points = [(x, math.log10(y) if log else y) for line in lines for x, y in line]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    margin = 0.05 * (y_hi - y_lo)  # keep lines off the frame
    y_lo, y_hi = y_lo - margin, y_hi + margin

    def at(x, y):
        y = math.log10(y) if log else y
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left), bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))

    for frac in (0.0, 0.5, 1.0):
        value = y_lo + frac * (y_hi - y_lo)
        y = bottom - frac * (bottom - top)
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((x0 + 4, y - 6), f"{10 ** value:.3g}" if log else f"{value:.2f}", fill="black", font=font)
        x = left + frac * (right - left)
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - 12, bottom + 6), f"{round(x_lo + frac * (x_hi - x_lo))}", fill="black", font=font)
    for i, line in enumerate(lines):
        color = "black" if i == 0 else (160, 160, 160)
        coords = [at(x, y) for x, y in line]
        if len(coords) == 1:
            cx, cy = coords[0]
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=color)
        else:
            draw.line(coords, fill=color, width=2 if i == 0 else 1)
