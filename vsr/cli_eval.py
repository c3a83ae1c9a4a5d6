"""`vsr eval` and `vsr prepare`: click commands that vsr/cli.py registers on the `vsr` group.

Each one parses options, calls one library function (vsr.evaluate, vsr.data) and reports; a VsrError becomes one
`Error: ...` line and exit status 1, here as well as under the group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from vsr.cli_options import SCALES, load_cli_model, model_given, one_line_errors, threads_option
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, set_cpu_threads


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
@one_line_errors
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
@one_line_errors
def prepare_cmd(clips_dir, out_dir, every, max_frames, holdout):
    """Decode video clips once into PNG frames (OUT_DIR/train, OUT_DIR/holdout) for `vsr train --data OUT_DIR`."""
    from tqdm import tqdm

    from vsr import data

    with tqdm(unit="frame", desc="prepare", file=sys.stderr, dynamic_ncols=True) as bar:
        written = data.prepare_frames(clips_dir, out_dir, every=every, max_frames=max_frames, holdout=holdout,
                                      progress=bar.update)
    where = f"{out_dir / 'train'}" + (f" and {out_dir / 'holdout'}" if holdout > 0 else "")
    click.echo(f"wrote {written} frames to {where}; train with: vsr train --data {out_dir}", err=True)
