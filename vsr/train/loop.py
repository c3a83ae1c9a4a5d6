"""`train(cfg)`: one loop that reads top to bottom (nanoGPT's train.py).

The learning rate is a pure function of the step, autocast is chosen once, the GAN step follows BasicSR's SRGANModel
(D frozen for the G step; G loss = mse_weight * pixel + perceptual + adv_weight * adversarial, the first two against
the unsharp-masked HR with --sharpen-gt; then D on gt and on sr.detach()). Master weights, the optimizer and the EMA
of G stay fp32 whatever `--precision` says.

Under `torchrun` every process trains its own crops (DDP, NCCL on CUDA, gloo on CPU; see vsr.train.distributed):
`--batch-size` is per process, so the global batch is batch_size x world size; BatchNorm statistics are those of the
global batch; losses are logged as the mean over ranks; only rank 0 validates and writes, the others wait for it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vsr import data, evaluate, losses, models
from vsr.errors import VsrError
from vsr.precision import autocast, choose_precision
from vsr.train import distributed
from vsr.train.checkpoint import (
    CKPT_VERSION,
    Ema,
    Batches,
    data_position,
    dataset_rng,
    generator_args,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_dataset_rng,
    set_rng_states,
    export_weights,
    load_matching,
)
from vsr.train.config import TrainConfig, split_validation, lr_at, resolve_config
from vsr.train.distributed import Ranks
from vsr.train.events import EventLog
from vsr.train.plots import degradation_example, draw_curves, sample_grid
from vsr.train.sequences import evaluate_sequences, generator_param_groups, make_dataset, to_device
from vsr.train.runlog import GracefulStop, append_log, describe_val, log, truncate_log


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
    ranks = distributed.init_distributed(cfg.device)
    try:
        return _train(cfg, ranks, progress)
    finally:
        distributed.close(ranks)


def _train(cfg: TrainConfig, ranks: Ranks, progress: bool) -> dict:
    gan, master, world, device = cfg.phase == "gan", ranks.master, ranks.world, ranks.device
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
    # On CPU the `vsr` command keeps freed memory for reuse (vsr.cli.main); a library caller's allocator is its own.
    precision = choose_precision(cfg.precision, device)
    ctx = autocast(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")

    # Models. G's architecture comes from the checkpoint (resume), the MSE run (GAN phase), or the flags.
    model_args, init_state = generator_args(cfg, ckpt)
    if gan and not cfg.init_from and not ckpt and master:
        log("Warning: --phase gan without --init-from starts G from random weights (the paper starts from SRResNet)")
    raw_g = models.build_model(model_args["arch"], **model_args["args"])
    if not any(p.requires_grad for p in raw_g.parameters()):
        raise VsrError(f"model {model_args['arch']} has no weights to train")
    if cfg.frames > 1 and not getattr(raw_g, "recurrent", False):
        raise VsrError(f"--frames {cfg.frames} trains on sequences: it needs a recurrent architecture "
                       f"(--arch rsrresnet), not {model_args['arch']}")
    if init_state is not None:
        copied, total = load_matching(raw_g, init_state)
        if copied == 0:
            raise VsrError(f"--init-from {cfg.init_from} shares no weights with {model_args}")
        if master and (copied < total or copied < len(init_state)):
            log(f"--init-from {cfg.init_from}: {copied} of its {len(init_state)} tensors copied into the "
                 f"{total} of this model (the layers they share carry over; the others start fresh)")
    d_args = {"num_feat": cfg.d_num_feat} if not ckpt else ckpt["d_args"]
    raw_d = models.Discriminator(**d_args) if gan else None
    # channels_last: the layout oneDNN and cuDNN run convs fastest in, bf16/fp16 especially.
    raw_g.to(device, memory_format=torch.channels_last).train()
    if raw_d is not None:
        raw_d.to(device, memory_format=torch.channels_last).train()
    if perceptual is not None:
        perceptual.to(device, memory_format=torch.channels_last)
    ema = Ema(raw_g, cfg.ema_decay) if cfg.ema_decay > 0 else None  # a copy with plain BN, for validation
    # BatchNorm over the global batch (world > 1). The new modules share the parameters and buffers (and their names),
    # so the optimizers, the EMA and the checkpoint's state dicts are as at world size 1.
    raw_g = distributed.sync_batchnorm(raw_g, ranks)
    raw_d = distributed.sync_batchnorm(raw_d, ranks) if gan else None
    opt_g = torch.optim.Adam(generator_param_groups(raw_g, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(raw_d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)) if gan else None

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
    # At least 100 steps per pass, so small folders (T91: 91 images) do not restart the loader every 5 steps. A
    # resumed run keeps its pass length, whatever its world size now.
    length = ckpt["data"].get("length") if ckpt else None
    dataset = make_dataset(cfg, train_sources, degradation, length or max(n_images, 100 * cfg.batch_size * world))
    loader = data.make_loader(dataset, cfg.batch_size, cfg.workers, distributed=world > 1, seed=cfg.seed)

    step, last_val = 0, None
    if ckpt:
        raw_g.load_state_dict(ckpt["G"])
        if len(ckpt["opt_g"]["param_groups"]) != len(opt_g.param_groups):
            raise VsrError("--past-lr-scale cannot switch between 1 and another value on --resume; start a new run")
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
    batches = Batches(loader, cfg.seed, *(data_position(ckpt["data"], cfg.batch_size, world) if ckpt else (0, 0)))
    saved_rngs = ckpt["data"].get("dataset_rng") if ckpt else None
    saved_rngs = [saved_rngs] if isinstance(saved_rngs, str) else saved_rngs  # one process's, before per-rank lists
    if saved_rngs and len(saved_rngs) == world and cfg.workers == 0:
        set_dataset_rng(dataset, saved_rngs[ranks.rank])  # each rank goes on with its own stream of crops

    model_g = distributed.data_parallel(raw_g, ranks)
    model_d = distributed.data_parallel(raw_d, ranks) if gan else None
    if cfg.compile:
        model_g = torch.compile(model_g)

    log_path = run / "log.jsonl"
    if master:
        (run / "samples").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        if ckpt:
            truncate_log(log_path, step)  # lines written after the checkpoint belong to steps we redo
        elif log_path.exists():
            log_path.unlink()
        if cfg.degrade == "realistic" and not ckpt:
            degradation_example(dataset, degradation, cfg, run / "degradation_example.png")
        n_params = sum(p.numel() for p in raw_g.parameters())
        log(
            f"train {cfg.phase}: {model_args['arch']} x{cfg.scale} {model_args['args']} ({n_params / 1e6:.2f} M params)"
            f" on {device}{f' x{world}' if world > 1 else ''}, {precision.name} ({precision.reason}); "
            f"{len(dataset.paths)} training images, {cfg.degrade} LR, batch {cfg.batch_size}"
            f"{f' sequences of {cfg.frames} frames' if cfg.frames > 1 else ''}"
            f"{f' x {world} ranks = {cfg.batch_size * world}' if world > 1 else ''}; validation: {describe_val(val)}; "
            f"run: {run}" + (f"; resuming at step {step}" if ckpt else "")
        )
    events = EventLog.open(run, step) if master else None  # TensorBoard event files, when it is installed

    def validate(max_images=None, samples=False) -> dict | None:
        """PSNR/SSIM on the validation images with the EMA model (rank 0); optionally a sample grid."""
        if val is None:
            return None
        net = ema.module if ema is not None else raw_g
        shown = []
        keep = (lambda name, hr, lr, bic, sr: shown.append((hr, lr, bic, sr)) if len(shown) < 3 else None)
        if cfg.frames > 1:  # held-out runs of frames, played in order
            result = evaluate_sequences(val, net, cfg.scale, degradation, device, precision, seed=cfg.seed,
                                        max_runs=max_images, on_image=keep if samples else None)
        else:
            result = evaluate.evaluate_folder(val, net, cfg.scale, degradation, device, precision,
                                              max_images=max_images, on_image=keep if samples else None)
        raw_g.train()  # the evaluator put G in eval mode when it is the model validated (no EMA)
        if samples:
            sample_grid(shown, cfg.scale, step, run / "samples" / f"step_{step:06d}.png")
        return result

    def checkpoint(lockstep: bool = True) -> None:
        """Rank 0 writes ckpt.pt. In lockstep (every rank here at the same step), all ranks first check that they
        hold the same weights and hand rank 0 their crop streams, and the others wait until the file is written."""
        states = {"G": raw_g.state_dict(), **({"D": raw_d.state_dict()} if gan else {})}
        rngs = distributed.gather(dataset_rng(dataset), ranks) if lockstep else [dataset_rng(dataset)]
        if world > 1 and lockstep:  # a hash of each rank's weights and BN statistics: all must be the same
            prints = distributed.gather({k: distributed.fingerprint(v) for k, v in states.items()}, ranks)
            if any(p != prints[0] for p in prints):
                raise VsrError(f"the {world} ranks hold different weights at step {step} ({prints}): DDP lost sync; "
                               f"resume from the last checkpoint")
            if master:
                append_log(log_path, {"step": step, "weights": {k: [p[k] for p in prints] for k in states}})
        if not master:
            return distributed.barrier(ranks) if lockstep else None
        save_checkpoint(ckpt_path, {
            "version": CKPT_VERSION,
            "model_args": model_args,
            "d_args": d_args if gan else None,
            "config": dataclasses.asdict(cfg),
            "step": step,
            "G": states["G"],
            "D": states.get("D"),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict() if gan else None,
            "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_states(),
            "data": {"epoch": batches.epoch, "offset": batches.offset, "world": world, "batch_size": cfg.batch_size,
                     "length": len(dataset), "dataset_rng": rngs},
            "val": last_val,
            "precision": precision.name,
        })
        if lockstep:
            distributed.barrier(ranks)

    def record_val(result: dict | None) -> None:
        nonlocal last_val
        if result is None:  # no validation images
            return
        last_val = {k: result[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "images",
                                           "temporal_error_y", "bicubic_temporal_error_y") if k in result}
        append_log(log_path, {"step": step, "val": last_val})
        if events is not None:
            events.scalars(step, last_val, prefix="val/")
        terr = (f"; temporal error {last_val['temporal_error_y']:.3f} (bicubic "
                f"{last_val['bicubic_temporal_error_y']:.3f})" if "temporal_error_y" in last_val else "")
        log(f"step {step}: validation PSNR {last_val['psnr_y']:.2f} dB, SSIM {last_val['ssim_y']:.4f} "
            f"(bicubic {last_val['bicubic_psnr_y']:.2f} dB, {last_val['bicubic_ssim_y']:.4f}){terr}")

    if master and not ckpt and val is not None:
        record_val(validate(samples=True))  # the starting point the curve is compared against

    if master and ckpt and step >= cfg.steps:
        log(f"{run} is already at step {step} (--steps {cfg.steps}): nothing to train; raise --steps to go on")
    bar = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True, disable=not (master and progress))
    running: dict[str, torch.Tensor] = {}
    window, window_start = 0, time.perf_counter()
    interrupted, lockstep = False, True
    with GracefulStop() as stop:
        try:
            while step < cfg.steps:
                lr = lr_at(step, cfg)
                for opt in (opt_g, opt_d) if gan else (opt_g,):
                    for group in opt.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                lq, gt = next(batches)
                lq, gt = to_device(lq, device), to_device(gt, device)

                # G step. D is frozen so the adversarial term trains G only; it is called unwrapped (no DDP hooks
                # for parameters that get no gradient here).
                if gan:
                    raw_d.requires_grad_(False)
                target = losses.sharpened_target(gt, cfg.sharpen_gt)
                with ctx:
                    sr = model_g(lq)
                    l_pix = F.mse_loss(sr.float(), target)
                    named = {"pix": l_pix}
                    l_g = cfg.mse_weight * l_pix if gan else l_pix
                    if cfg.temporal_weight > 0:
                        named["temporal"] = losses.temporal_difference_loss(sr, target)
                        l_g = l_g + cfg.temporal_weight * named["temporal"]
                    if perceptual is not None:
                        named["percep"] = perceptual(sr, target)
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
                log_step = step % cfg.log_every == 0 or last
                if world > 1 and log_step:
                    # Every rank must leave the loop at the same step, or the others hang in their next all-reduce:
                    # a Ctrl-C seen by any rank is agreed on at log steps.
                    stop.requested = distributed.any_rank(stop.requested, ranks)
                    running = distributed.mean_over_ranks(running, ranks)  # the global batch's losses
                stopping = stop.requested and (world == 1 or log_step)
                if master and (log_step or stopping):
                    seconds = time.perf_counter() - window_start
                    means = {k: round((v / window).item(), 6) for k, v in running.items()}  # .item(): a sync point
                    append_log(log_path, {"step": step, "lr": lr, "losses": means, "it_s": round(window / seconds, 3)})
                    if events is not None:
                        events.scalars(step, {**{f"loss/{k}": v for k, v in means.items()}, "lr": lr,
                                              "it_s": window / seconds})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                if log_step or stopping:
                    running, window = {}, 0
                if master and (step % cfg.val_every == 0 or last):
                    record_val(validate(samples=step % cfg.sample_every == 0 or last))
                elif master and step % cfg.sample_every == 0:
                    validate(max_images=3, samples=True)
                if master and (step % cfg.val_every == 0 or last):
                    draw_curves(log_path, run / "curves.png")
                if step % cfg.ckpt_every == 0 or last:
                    checkpoint()
                if log_step:
                    window_start = time.perf_counter()  # it/s counts training, not validation or checkpoints
                if stopping:
                    interrupted = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C, mid-step: keep what the completed steps learned
            # Ranks may now be at different points of a step: no more collectives, rank 0 saves its own state.
            interrupted, lockstep = True, world == 1
    bar.close()
    if events is not None:
        events.close()
    # Every run leaves weights that enhance and eval load as they are: the EMA of G, self-describing, in RUN/model.pt.
    model_path = run / "model.pt"
    exported = None
    if interrupted:
        checkpoint(lockstep)
        if master:
            draw_curves(log_path, run / "curves.png")
            export_weights(ckpt_path, model_path)
            log(f"interrupted at step {step}: checkpoint saved to {ckpt_path}; continue with --resume")
            log(f"weights so far: {model_path}; try them with: vsr enhance INPUT --weights {model_path}")
    elif master:
        export_weights(ckpt_path, model_path)
        log(f"weights: {model_path}; use them with: vsr enhance INPUT --weights {model_path}")
        if cfg.export:
            exported = export_weights(ckpt_path, cfg.export)
            name, _, suffix = exported.stem.rpartition("_x")
            found_by = f" or -m {name}" if suffix == str(cfg.scale) and exported.parent.name == "weights" else ""
            log(f"exported EMA weights to {exported} (load with --weights {exported}{found_by})")
            exported = str(exported)
    if lockstep:
        distributed.barrier(ranks)  # the others end when rank 0 has written the final weights
    return {"step": step, "run": str(run), "checkpoint": str(ckpt_path), "val": last_val, "export": exported,
            "model": str(model_path), "interrupted": interrupted}
