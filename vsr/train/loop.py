"""`train(cfg)`: one loop that reads top to bottom (nanoGPT's train.py).

The learning rate is a pure function of the step, autocast is chosen once, the GAN step follows BasicSR's SRGANModel
(D frozen for the G step; G loss = mse_weight * pixel + perceptual + adv_weight * adversarial; then D on gt and on
sr.detach()). Master weights, the optimizer and the EMA of G stay fp32 whatever `--precision` says. Under `torchrun`
every process trains (DDP, NCCL on CUDA, gloo on CPU); only rank 0 writes or validates.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vsr import data, evaluate, losses, models
from vsr.errors import VsrError
from vsr.models.fast import keep_freed_memory
from vsr.precision import autocast, choose_precision, resolve_device
from vsr.train.checkpoint import (
    CKPT_VERSION,
    Ema,
    Batches,
    dataset_rng,
    initial_generator,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_dataset_rng,
    set_rng_states,
    export_weights,
    load_matching,
)
from vsr.train.config import TrainConfig, split_validation, lr_at, resolve_config
from vsr.train.events import EventLog
from vsr.train.plots import degradation_example, draw_curves, sample_grid


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Trains a model as `cfg` says, writing everything to `cfg.run`.

    Args:
        cfg: the options (see TrainConfig); phase defaults are filled in by `resolve_config`.
        progress: show a tqdm bar (rank 0 only).

    Returns:
        {"step", "run", "checkpoint", "model" (RUN/model.pt: the EMA weights every run exports when it ends or is
        interrupted), "val" (last validation dict or None), "export" (path or None), "interrupted"}.

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


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device, progress: bool) -> dict:
    gan, master = cfg.phase == "gan", rank == 0
    run = Path(cfg.run)
    ckpt_path = run / "ckpt.pt"
    if not cfg.resume and ckpt_path.exists():
        raise VsrError(f"{run} already holds a checkpoint; pass --resume to continue it, or choose another --run")
    # The VGG/EfficientNet file is checked before anything slow happens, so a missing one stops the run at once.
    perceptual = losses.perceptual_loss(cfg.perceptual, cfg.perceptual_weights, cfg.vgg_layer, cfg.perceptual_scale)
    ckpt = load_checkpoint(ckpt_path) if cfg.resume else None
    if ckpt and ckpt["config"]["phase"] != cfg.phase:
        raise VsrError(f"{ckpt_path} is a {ckpt['config']['phase']}-phase run; resume it with --phase "
                       f"{ckpt['config']['phase']} (or start the GAN phase in a new --run with --init-from)")

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # same on every rank: identical initial weights (DDP broadcasts them anyway)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: cuDNN's autotuned kernels pay off
    else:
        keep_freed_memory()  # every step frees and reallocates the same large activations
    precision = choose_precision(cfg.precision, device)
    ctx = autocast(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")

    # Models. G's architecture comes from the checkpoint (resume), the MSE run (GAN phase), or the flags.
    init_state = None
    if ckpt:
        model_args = ckpt["model_args"]
    elif cfg.init_from:
        model_args, init_state = initial_generator(cfg.init_from, cfg.arch, cfg.scale)
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
        copied, total = load_matching(raw_g, init_state)
        if copied == 0:
            raise VsrError(f"--init-from {cfg.init_from} shares no weights with {model_args}")
        if master and (copied < total or copied < len(init_state)):
            _log(f"--init-from {cfg.init_from}: {copied} of its {len(init_state)} tensors copied into the "
                 f"{total} of this model (another scale: the trunk carries over, the upsampler differs)")
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
    train_sources, val = split_validation(cfg)
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
        set_rng_states(ckpt["rng"])
    batches = Batches(loader, cfg.seed, *((ckpt["data"]["epoch"], ckpt["data"]["offset"]) if ckpt else (0, 0)))
    if ckpt and world == 1 and cfg.workers == 0:
        set_dataset_rng(dataset, ckpt["data"].get("dataset_rng"))

    model_g, model_d = raw_g, raw_d
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        model_g = nn.parallel.DistributedDataParallel(raw_g, device_ids=device_ids)
        if gan:
            model_d = nn.parallel.DistributedDataParallel(raw_d, device_ids=device_ids)
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
            degradation_example(dataset, degradation, cfg, run / "degradation_example.png")
        n_params = sum(p.numel() for p in raw_g.parameters())
        _log(
            f"train {cfg.phase}: {model_args['arch']} x{cfg.scale} {model_args['args']} ({n_params / 1e6:.2f} M params)"
            f" on {device}{f' x{world}' if world > 1 else ''}, {precision.name} ({precision.reason}); "
            f"{len(dataset.paths)} training images, {cfg.degrade} LR; validation: {_describe(val)}; run: {run}"
            + (f"; resuming at step {step}" if ckpt else "")
        )
    events = EventLog.open(run, step) if master else None  # TensorBoard event files, when it is installed

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
            sample_grid(shown, cfg.scale, step, run / "samples" / f"step_{step:06d}.png")
        return result

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
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
            "rng": rng_states(),
            "data": {"epoch": batches.epoch, "offset": batches.offset, "dataset_rng": dataset_rng(dataset)},
            "val": last_val,
            "precision": precision.name,
        })

    def record_val(result: dict) -> None:
        nonlocal last_val
        last_val = {k: result[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "images")}
        _append_log(log_path, {"step": step, "val": last_val})
        if events is not None:
            events.scalars(step, last_val, prefix="val/")
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
                    if events is not None:
                        events.scalars(step, {**{f"loss/{k}": v for k, v in means.items()}, "lr": lr,
                                              "it_s": window / seconds})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                    running, window = {}, 0
                if master and (step % cfg.val_every == 0 or last):
                    record_val(validate(samples=step % cfg.sample_every == 0 or last))
                elif master and step % cfg.sample_every == 0:
                    validate(max_images=3, samples=True)
                if master and (step % cfg.val_every == 0 or last):
                    draw_curves(log_path, run / "curves.png")
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
    if events is not None:
        events.close()
    # Every run leaves weights that enhance and eval load as they are: the EMA of G, self-describing, in RUN/model.pt.
    model_path = run / "model.pt"
    if interrupted:
        if master:
            checkpoint()
            draw_curves(log_path, run / "curves.png")
            export_weights(ckpt_path, model_path)
            _log(f"interrupted at step {step}: checkpoint saved to {ckpt_path}; continue with --resume")
            _log(f"weights so far: {model_path}; try them with: vsr enhance INPUT --weights {model_path}")
        return {"step": step, "run": str(run), "checkpoint": str(ckpt_path), "val": last_val, "export": None,
                "model": str(model_path), "interrupted": True}
    if master:
        export_weights(ckpt_path, model_path)
        _log(f"weights: {model_path}; use them with: vsr enhance INPUT --weights {model_path}")
    exported = None
    if master and cfg.export:
        exported = export_weights(ckpt_path, cfg.export)
        name, _, suffix = exported.stem.rpartition("_x")
        found_by = f" or -m {name}" if suffix == str(cfg.scale) and exported.parent.name == "weights" else ""
        _log(f"exported EMA weights to {exported} (load with --weights {exported}{found_by})")
        exported = str(exported)
    return {"step": step, "run": str(run), "checkpoint": str(ckpt_path), "val": last_val, "export": exported,
            "model": str(model_path), "interrupted": False}


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _describe(val) -> str:
    if val is None:
        return "none (pass --val DIR, e.g. a benchmark folder, or prepare the data with vsr prepare --holdout)"
    return str(val)


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


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
