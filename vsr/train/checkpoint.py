"""What a run saves and resumes from: the checkpoint dict (one file, ckpt.pt), the EMA of G, the position in the
data and the random states; where the GAN phase's G starts from; and exporting a checkpoint as a weights file.

A checkpoint holds only tensors and plain Python values, so it loads with `weights_only=True`; its layout is
versioned by CKPT_VERSION, and resume rebuilds G from its `model_args`, never from today's defaults.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import models
from vsr.atomic import atomic_write
from vsr.errors import VsrError

CKPT_VERSION = 1


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


class Batches:
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


def data_position(saved: dict, batch_size: int, world: int) -> tuple[int, int]:
    """(pass, batches already taken per rank in it) to resume from, given a checkpoint's "data" record.

    The record counts batches per rank at the world size and batch size it was written with; at another world size
    or batch size the same number of samples of the pass is skipped (rounded down to whole batches), so a resumed
    run neither starts the pass over nor runs past it. (Which images those are differs: each world size shuffles
    its own way.)
    """
    saved_world, saved_batch = saved.get("world", 1), saved.get("batch_size", batch_size)
    if (saved_world, saved_batch) == (world, batch_size):
        return saved["epoch"], saved["offset"]
    return saved["epoch"], saved["offset"] * saved_batch * saved_world // (batch_size * world)


def save_checkpoint(path: Path, ckpt: dict) -> None:
    """torch.save to a temp file beside `path`, then rename: a crash mid-write never leaves a broken ckpt.pt."""
    with atomic_write(path) as temp:
        torch.save(ckpt, temp)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise VsrError(f"no checkpoint {path} (start without --resume, or point --run at an existing run)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on damaged files
        raise VsrError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CKPT_VERSION or "model_args" not in ckpt:
        raise VsrError(f"{path} is not a vsr training checkpoint")
    return ckpt


def read_checkpoint_config(run: str | Path) -> dict:
    """The config a run was started with (from its ckpt.pt), for `--resume` to start from."""
    return dict(load_checkpoint(Path(run) / "ckpt.pt")["config"])


def rng_states() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def dataset_rng(dataset) -> str | None:
    """The main-process augmentation generator of a PairDataset (workers=0), as JSON; None if it has none yet."""
    state = dataset.rng_state()
    return json.dumps(state) if state is not None else None


def set_dataset_rng(dataset, state: str | None) -> None:
    if state is not None:
        dataset.set_rng_state(json.loads(state))


def resolve_init_from(name: str) -> Path:
    """What ``--init-from`` names: a file, a run folder (its model.pt, else ckpt.pt), or a shipped weights name
    (``srresnet_real_x4``: fine-tuning a shipped model on one's own clips).

    Raises:
        VsrError: none of these.
    """
    path = Path(name)
    if path.exists():
        return models.resolve_weights_path(path)
    shipped = models.weights_dir() / f"{name}.pt"
    if shipped.is_file() and os.sep not in name and "/" not in name:
        return shipped
    have = ", ".join(sorted(p.stem for p in models.weights_dir().glob("*.pt")))
    raise VsrError(f"--init-from {name}: no such file or run folder, and no shipped weights of that name ({have})")


def initial_generator(path: str, arch: str, scale: int) -> tuple[dict, dict]:
    """Model args and state dict to start G from: a training ckpt.pt (its EMA), a run folder, a weights file (its
    own architecture) or a shipped name, at `scale` or at another scale (then only its trunk is used)."""
    path = resolve_init_from(path)
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
        # Another scale of the same architecture: the trunk carries over (EDSR's trick of starting one scale from
        # another), the tensors whose shapes differ (the upsampler) start fresh; see load_matching.
        model_args = {"arch": model_args["arch"], "args": {**model_args["args"], "scale": scale}}
    return model_args, state


def generator_args(cfg, ckpt: dict | None) -> tuple[dict, dict | None]:
    """G's `model_args` and the state dict to start it from (None: fresh weights, or the checkpoint's own).

    The architecture comes from the checkpoint (resume), from --init-from (the GAN phase: the MSE run), or from the
    flags (`cfg`, a TrainConfig).

    Raises:
        VsrError: --num-feat / --num-block contradict the checkpoint or --init-from.
    """
    init_state = None
    if ckpt:
        model_args = ckpt["model_args"]
    elif cfg.init_from:
        sequences = getattr(cfg, "frames", 1) > 1
        # A recurrent model may start from a per-frame file (--arch rsrresnet --init-from srresnet_real_x4), which
        # names its own arch: the layers they share carry over by name (load_matching), the others start fresh.
        model_args, init_state = initial_generator(cfg.init_from, None if sequences else cfg.arch, cfg.scale)
        if sequences and model_args["arch"] != cfg.arch:
            args = {"scale": cfg.scale, "num_feat": model_args["args"].get("num_feat", 64)}
            args.update({k: v for k, v in (("num_feat", cfg.num_feat), ("num_block", cfg.num_block)) if v is not None})
            model_args = {"arch": cfg.arch, "args": args}
    else:
        args = {"scale": cfg.scale}
        args.update({k: v for k, v in (("num_feat", cfg.num_feat), ("num_block", cfg.num_block)) if v is not None})
        model_args = {"arch": cfg.arch, "args": args}
    for name in ("num_feat", "num_block"):
        asked, built = getattr(cfg, name), model_args["args"].get(name)
        if asked is not None and built is not None and asked != built:
            source = "the checkpoint" if ckpt else f"--init-from {cfg.init_from}"
            raise VsrError(f"--{name.replace('_', '-')} {asked} does not match {source}, which has {built}")
    return model_args, init_state


def load_matching(model: torch.nn.Module, state: dict) -> tuple[int, int]:
    """Loads the tensors of `state` whose name and shape `model` has; returns (copied, model's total)."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(matching)
    model.load_state_dict(own)
    return len(matching), len(own)


def export_weights(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Writes a checkpoint's EMA weights (the raw G's without EMA) as a `models.save_weights` file.

    `vsr enhance --weights OUT` loads it, and so does `-m NAME` when OUT is vsr/weights/NAME_x<scale>.pt.

    Returns:
        The path written.
    """
    ckpt = load_checkpoint(Path(ckpt_path))
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
        "perceptual_scale": cfg.get("perceptual_scale", 1.0) if cfg["perceptual"] != "none" else None,
        "mse_weight": cfg["mse_weight"],
        "adv_weight": cfg["adv_weight"] if cfg["phase"] == "gan" else None,
        "generative": "yes" if cfg["phase"] == "gan" else "no",  # adversarial: may draw detail (vsr.provenance)
        "sharpen_gt": cfg.get("sharpen_gt", 0.0),
        "sample_by": cfg.get("sample_by", "image"),
        "ema_decay": cfg["ema_decay"],
        "init_from": cfg.get("init_from"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    models.save_weights(model, out_path, arch=model_args["arch"], args=model_args["args"], meta=meta)
    return out_path
