"""`vsr bench`: the command; the measuring is `vsr.bench`."""

from __future__ import annotations

import click
from click.core import ParameterSource

from vsr.cli_options import threads_option
from vsr.cli_options import SCALES
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, set_cpu_threads
from vsr.video import CODECS

# What `vsr bench --sizes` measures alone: a thumbnail, a PAL DVD / DV frame, 720p and 1080p.
BENCH_SIZES = "160x120,720x576,1280x720,1920x1080"


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-m", "--model", "model_names", multiple=True, help="Architecture (random weights are used unless --weights: speed does not depend on the values); repeat for one row per model.  [default: srresnet]")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), help="Time this weights file instead.")
@click.option("-s", "--scale", type=click.Choice(SCALES), default="4", show_default=True, help="Upscaling factor.")
@click.option("--size", default="720x576", show_default=True, help="Input frame size WxH (720x576: a PAL DVD frame).")
@click.option("--sizes", is_flag=False, flag_value=BENCH_SIZES, default=None, help="Measure each of these sizes (comma-separated WxH), each in a fresh process (so each row's RSS is its own), one row each.  [alone: 160x120,720x576,1280x720,1920x1080]")
@click.option("--frames", type=click.IntRange(1), default=None, help="Frames in the generated clip (every figure is timed on the same frames; on a short clip the end-to-end figure is mostly start-up and the encoder's final flush).  [default: 256 at 160x120, as many pixels at other sizes, at least 4]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="Number format.")
@click.option("--fp32", is_flag=True, help="Shorthand for --precision fp32.")
@click.option("-b", "--batch-size", type=click.IntRange(1, 256), default=None, help="Frames per model call.  [default: what vsr enhance chooses for the size, with its tiles]")
@click.option("-c", "--codec", type=click.Choice(CODECS), default="libx264", show_default=True, help="Encoder for the end-to-end run.")
@click.option("--preset", default=None, help="Encoder speed preset of every encode (e.g. medium, veryfast).  [default: medium, as vsr enhance]")
@click.option("--profile", is_flag=True, help="Also print the share of model time per op type (torch.profiler).")
@click.option("--no-naive", is_flag=True, help="Skip timing the naive per-frame loop (decode, model, encode).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row instead of the table.")
@threads_option
def bench_cmd(model_names, weights, scale, size, sizes, frames, device, precision, fp32, batch_size, codec, preset,
              profile, no_naive, as_json, threads):
    """Measure decode, model-only, encode, end-to-end and naive-loop fps and the bare-conv bar, in one run."""
    import json

    from vsr import bench as bench_mod

    from vsr import models

    def parse(text: str) -> tuple[int, int]:
        try:
            width, height = (int(v) for v in text.strip().lower().split("x"))
        except ValueError:
            raise VsrError(f"sizes must look like 720x576, got {text!r}") from None
        return width, height

    set_cpu_threads(threads)
    ctx = click.get_current_context()
    if weights and ctx.get_parameter_source("scale") == ParameterSource.DEFAULT:
        scale = models.inspect_weights(weights)["scale"] or scale  # a weights file knows its scale
    names = list(model_names) or ([None] if weights else ["srresnet"])
    options = dict(weights=weights, scale=int(scale), frames=frames, device=device,
                   precision="fp32" if fp32 else precision, batch_size=batch_size, codec=codec, preset=preset,
                   profile=profile, naive=not no_naive)
    if sizes or len(names) > 1:
        results = bench_mod.run_sweep([parse(t) for t in (sizes or size).split(",")], names, threads, **options)
    else:
        width, height = parse(size)
        results = [bench_mod.run_bench(model=names[0], width=width, height=height, **options)]
    if as_json:
        click.echo("\n".join(json.dumps(result) for result in results))
        return
    click.echo(bench_mod.format_table(results))
    for result in results:
        click.echo(f"{result['model']} at {result['size']}: {result['work']}")
        if profile:
            click.echo(bench_mod.format_shares(result))
