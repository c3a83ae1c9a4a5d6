"""`vsr compare`, `vsr info` and what `vsr enhance` shows of its estimate (the bar's expected total, --estimate):
the options parsed here, the work done in `vsr.compare`, `vsr.info` and `vsr.estimate`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from vsr.cli_options import parse_time, threads_option
from vsr.cli_options import load_cli_model
from vsr.errors import VsrError
from vsr.models import SCALES as MODEL_SCALES
from vsr.precision import PRECISIONS, set_cpu_threads


class RunEstimate:
    """The progress bar's companion: feeds a `vsr.estimate.RunClock`, prints the expected duration of the whole run
    once the first batches give a rate, and keeps the refined figure in the bar."""

    def __init__(self, bar, total: int | None):
        from vsr.pipeline.estimate import RunClock

        self.bar, self.clock, self.printed = bar, RunClock(total), False

    def update(self, frames: int) -> None:
        from vsr.pipeline.estimate import format_duration

        self.bar.update(frames)
        self.clock.update(frames)
        expected = self.clock.expected_total()
        if expected is None:
            return
        self.bar.set_postfix_str(f"whole run ~{format_duration(expected)}", refresh=False)
        if not self.printed and self.clock.ready:
            self.printed = True
            self.bar.write(f"Estimate: the whole run should take about {format_duration(expected)} "
                           f"({self.clock.per_frame:.3g} s/frame so far; refined in the bar)", file=sys.stderr)


def print_estimate(input: Path, output: Path | None, net, cfg, files: list[Path] | None,
                   startup: float = 0.0) -> None:
    """``vsr enhance --estimate``: one line per file (and a total for a folder), nothing written. ``startup``: the
    seconds this process took to start and load the model, which the real run pays once as well."""
    import dataclasses

    from vsr import video
    from vsr.pipeline import estimate

    if files is None:
        if input.suffix.lower() in video.IMAGE_EXTS:
            one = estimate.estimate_image(input, net, cfg)
        else:
            one = estimate.estimate_video(input, output, net, cfg)
        click.echo(dataclasses.replace(one, seconds=one.seconds + startup).line())
        return
    if not files:
        raise VsrError(f"no videos or images in folder {input}")
    total = estimate.estimate_files(files, net, cfg, report=lambda one: click.echo(one.line()))
    click.echo(f"{input}: {len(files)} files, about {estimate.format_duration(total.seconds + startup)} in all, "
               f"output about {estimate.format_size(total.bytes)}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise VsrError(f"--crop takes x,y,w,h in input pixels (e.g. 100,80,64,64), got {text!r}") from None
    return x, y, w, h


@click.command("compare", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--at", "at", required=True, help="Start of the excerpt: seconds (12.5) or a timestamp (MM:SS, HH:MM:SS.mmm).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True, help="Length of the excerpt in seconds.")
@click.option("-s", "--scale", type=click.Choice(tuple(str(s) for s in MODEL_SCALES)), default="4", show_default=True, help="Upscaling factor of the -m models (--weights files have their own; all must agree).")
@click.option("-m", "--model", "names", multiple=True, help="A model to compare (repeatable): shipped weights name (vsr models).")
@click.option("--weights", "weights", multiple=True, type=click.Path(path_type=Path), help="A weights file to compare (repeatable): vsr's or another project's (Real-ESRGAN, ...).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Folder to write.  [default: <stem>_compare beside the input]")
@click.option("--crop", "crops", multiple=True, help="Region x,y,w,h in input pixels to zoom on in grid.png (repeatable, up to 3).  [default: the three most detailed]")
@click.option("--pair", default=None, help="LEFT,RIGHT: the two models of side_by_side.mp4.  [default: bicubic and the first other model]")
@click.option("--wipe", is_flag=True, help="In side_by_side.mp4, sweep the split line across and back instead of splitting at the middle.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="Number format.")
@click.option("-b", "--batch-size", type=click.IntRange(1, 256), default=None, help="Frames per model call.  [default: chosen as vsr enhance chooses it]")
@click.option("-t", "--tile", type=click.IntRange(0), default=None, help="LR tile side (0 = whole frames).  [default: chosen as vsr enhance chooses it]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@threads_option
def compare_cmd(input, at, duration, scale, names, weights, output, crops, pair, wipe, device, precision, batch_size,
                tile, overwrite, threads):
    """Run several models on the same short excerpt and write grid.png, side_by_side.mp4 and index.html.

    Bicubic is always included as the reference. The page (open it in any browser, it needs no network) has a wipe
    slider between any two outputs, zoom on click, and each model's time per frame on this machine with the
    estimated time for the whole input.
    """
    from vsr import compare, pipeline

    try:
        start = parse_time(at)
    except ValueError:
        raise VsrError(f"--at {at!r} is not seconds (12.5) or a timestamp (MM:SS, HH:MM:SS.mmm)") from None
    if not input.is_file():
        raise VsrError(f"no such file: {input}")
    pair_names = None
    if pair is not None:
        pair_names = tuple(p.strip() for p in pair.split(","))
        if len(pair_names) != 2 or not all(pair_names):
            raise VsrError(f"--pair takes LEFT,RIGHT (two model names and a comma), got {pair!r}")
    set_cpu_threads(threads)
    if not names and not weights:
        raise VsrError("name the models to compare: -m NAME (vsr models) and/or --weights FILE, each repeatable")
    nets = [load_cli_model(name, None, int(scale)) for name in names]
    nets += [load_cli_model("srresnet", str(w), None, check_arch=False) for w in weights]
    cfg = pipeline.EnhanceConfig(device=device, precision=precision, batch_size=batch_size, tile=tile)
    folder = output or input.with_name(f"{input.stem}_compare")
    # `kill` (SIGTERM) stops as cleanly as Ctrl-C: the half-built folder is removed.
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        result = compare.compare(input, folder, nets, cfg, at=start, duration=duration,
                                 crops=[_crop(c) for c in crops] or None, pair=pair_names, wipe=wipe,
                                 overwrite=overwrite, report=lambda line: click.echo(line, err=True))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for warning in result.warnings:
        click.echo(f"Note: {warning}", err=True)
    click.echo(f"{result.folder}: grid.png, side_by_side.mp4 ({result.pair[0]} | {result.pair[1]}), index.html "
               f"({len(result.runs)} models)")


@click.command("info", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(path_type=Path))
def info_cmd(file):
    """Show a video's or image's streams, interlacing, pixel aspect and duration, and what made it if vsr did
    (model, weights SHA-256, scale, precision, whether the model is generative)."""
    from vsr import info

    for line in info.describe(file):
        click.echo(line)
