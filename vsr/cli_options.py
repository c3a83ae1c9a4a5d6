"""Options kept apart from the commands: the realistic-degradation flags of `vsr train` (one per
data.Degradation field worth a flag) with the LO,HI range type they use, the time type of --start / --end / --at,
--threads, and what every command that runs a model shares: -m/--weights loading and one-line errors."""

from __future__ import annotations

import functools

import click
from click.core import ParameterSource

from vsr.errors import VsrError
from vsr.models import SCALES as MODEL_SCALES

SCALES = tuple(str(s) for s in MODEL_SCALES)  # as click.Choice takes them

# data.Degradation fields settable by flag (into TrainConfig.degrade_args); any field can be set in --config.
DEGRADE_FLAGS = ("blur_sigma", "noise_sigma", "poisson_prob", "camera_noise_prob", "interlace_prob", "chroma_prob",
                 "jpeg_prob", "jpeg_quality", "video_prob", "mpeg2_prob", "mpeg2_bpp", "crf", "second_order_prob")


class Range(click.ParamType):
    """LO,HI -> [lo, hi] (numbers)."""

    name = "LO,HI"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            lo, hi = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not LO,HI (two numbers and a comma)", param, ctx)
        return [int(lo) if lo.is_integer() else lo, int(hi) if hi.is_integer() else hi]


_DEGRADATION_OPTIONS = [
    click.option(
        "--blur-sigma", type=Range(), default=None,
        help="realistic: Gaussian blur sigma range, HR pixels  [default: 0.2,2]",
    ),
    click.option(
        "--noise-sigma", type=Range(), default=None,
        help="realistic: Gaussian noise std range, 0..255  [default: 0,10]",
    ),
    click.option(
        "--poisson-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of Poisson instead of Gaussian noise  [default: 0.3]",
    ),
    click.option(
        "--camera-noise-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of sensor noise in linear light (shot + read noise, low light) instead  [default: 0.3]",
    ),
    click.option(
        "--interlace-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of interlaced capture, deinterlaced by bwdif, yadif or line doubling  [default: 0.25]",
    ),
    click.option(
        "--chroma-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of 4:2:0 or DV 4:1:1 chroma subsampling by swscale  [default: 0.3]",
    ),
    click.option(
        "--jpeg-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of a JPEG stage  [default: 0.3]",
    ),
    click.option("--jpeg-quality", type=Range(), default=None, help="realistic: JPEG quality range  [default: 40,95]"),
    click.option(
        "--video-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of a codec round trip (H.264 or MPEG-2)  [default: 1]",
    ),
    click.option(
        "--mpeg2-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: share of coded clips coded as MPEG-2 (DVD) instead of H.264  [default: 0.3]",
    ),
    click.option(
        "--mpeg2-bpp", type=Range(), default=None,
        help="realistic: MPEG-2 bits per pixel range (DVD: 0.2-0.95)  [default: 0.2,0.95]",
    ),
    click.option("--crf", type=Range(), default=None, help="realistic: libx264 CRF range  [default: 18,35]"),
    click.option(
        "--second-order-prob", type=click.FloatRange(0, 1), default=None,
        help="realistic: chance of a second round (blur, resize, noise, H.264), as Real-ESRGAN  [default: 0.4]",
    ),
]


def degradation_options(command):
    """Adds the --blur-sigma ... --second-order-prob flags (defaults None: the preset's value) to a click command."""
    for option in reversed(_DEGRADATION_OPTIONS):
        command = option(command)
    return command


def parse_time(text: str) -> float:
    """'90', '12.5', '01:30', '1:02:03.250' -> seconds. Raises ValueError for anything else."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or any(not p.strip() for p in parts):
        raise ValueError(text)
    *whole, last = parts
    seconds = float(last)
    if not 0 <= seconds < float("inf") or (whole and seconds >= 60):
        raise ValueError(text)
    units = [int(p) for p in whole]  # int() refuses "1.5" as hours or minutes
    if any(u < 0 for u in units) or (len(units) == 2 and units[1] >= 60):
        raise ValueError(text)
    minutes = 0
    for unit in units:
        minutes = minutes * 60 + unit
    return minutes * 60 + seconds


class Time(click.ParamType):
    """Seconds or a timestamp (see :func:`parse_time`) -> seconds."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_time(value)
        except ValueError:
            self.fail(f"{value!r} is not seconds (12.5) or a timestamp (MM:SS, HH:MM:SS.mmm)", param, ctx)


threads_option = click.option(
    "--threads", type=click.IntRange(1), default=None,
    help="CPU threads of the model's ops (torch intra-op). On a machine shared with other jobs give each its share "
    "(e.g. 1 each on 2 cores): jobs that each take every core stall one another at every op.  [default: every core; "
    "under torchrun, OMP_NUM_THREADS or the cores shared among the local processes]",
)


def click_error(exc: VsrError) -> click.ClickException:
    """The one `Error: <first line>` (exit 1) a VsrError becomes, under the `vsr` group or a command alone."""
    return click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def one_line_errors(command):
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
