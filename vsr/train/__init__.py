"""`vsr train`: SRResNet with MSE (`--phase mse`), then SRGAN (`--phase gan`), as Ledig et al. 2017.

`train(cfg)` is one loop that reads top to bottom (nanoGPT's train.py): the learning rate is a pure function of the
step, autocast is chosen once, the GAN step follows BasicSR's SRGANModel (D frozen for the G step; G loss =
mse_weight * pixel + perceptual + adv_weight * adversarial; then D on gt and on sr.detach()). Master weights, the
optimizer and the EMA of G stay fp32 whatever `--precision` says. A checkpoint is one dict you can resume from:
the model is rebuilt from its `model_args`, never from today's defaults.

Run folder: config.json (the resolved config), log.jsonl (one JSON object per log step and per validation),
ckpt.pt, curves.png, samples/step_XXXXXX.png (LR | bicubic | SR | HR), degradation_example.png (realistic only).
Under `torchrun` every process trains (DDP, NCCL on CUDA, gloo on CPU) with BatchNorm synchronised across ranks;
`batch_size` is per process; only rank 0 writes or validates; a checkpoint resumes at any world size.

Modules: :mod:`~vsr.train.config` (TrainConfig, TOML, phase defaults, lr schedule, validation split),
:mod:`~vsr.train.loop` (train), :mod:`~vsr.train.checkpoint` (ckpt.pt, EMA, data position, RNG states, export),
:mod:`~vsr.train.distributed` (process group, synchronised BatchNorm, DDP, cross-rank checks),
:mod:`~vsr.train.runlog` (console lines, log.jsonl, Ctrl-C), :mod:`~vsr.train.events` (TensorBoard),
:mod:`~vsr.train.plots` (curves.png and sample grids).
"""

from vsr.train.checkpoint import CKPT_VERSION, Ema, Batches, export_weights, read_checkpoint_config
from vsr.train.config import (
    REPO,
    TrainConfig,
    split_validation,
    config_from_dict,
    cpu_supports_bf16,
    lr_at,
    read_config_file,
    resolve_config,
)
from vsr.train.loop import train

__all__ = [
    "Batches", "CKPT_VERSION", "REPO", "Ema", "TrainConfig", "config_from_dict", "cpu_supports_bf16",
    "export_weights", "lr_at", "read_checkpoint_config", "read_config_file", "resolve_config", "split_validation",
    "train",
]
