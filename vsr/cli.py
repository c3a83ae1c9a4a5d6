"""The `vsr` command line. Parses options, builds a config, calls one library function; errors become one line."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from vsr import cli_compare, cli_distributed, cli_folder
from vsr.cli_bench import bench_cmd
from vsr.cli_models import list_models_cmd
from vsr.cli_eval import eval_cmd, prepare_cmd
from vsr.cli_options import SCALES, Time as _Time, click_error, load_cli_model, model_given, threads_option
from vsr.cli_train import train_cmd
from vsr.errors import VsrError
from vsr.precision import PRECISIONS, set_cpu_threads
from vsr.video import CODECS, DEINTERLACE_MODES



class VsrGroup(click.Group):
    """Turns VsrError (and stray library exceptions) into one `Error: ...` line and exit 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VsrError as exc:
            raise click_error(exc) from None
        except KeyboardInterrupt:
            click.echo("Error: interrupted; no output was written", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("VSR_DEBUG"):
                raise
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise click.ClickException(f"unexpected failure ({line}); rerun with VSR_DEBUG=1 for details") from None


def _warn_one_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"Warning: {message}", err=True)


@click.group(cls=VsrGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="vsr")
def cli():
    """vsr: video super-resolution with SRResNet/SRGAN, keeping audio, timestamps and every frame."""
    warnings.showwarning = _warn_one_line


# The default model for video, chosen by scripts/footage_benchmark.py on the held-out validation clip through seven
# recorder chains (H.264 CRF 23/28/33, DVD MPEG-2, interlaced, noise, blur): the recurrent rsrresnet_real_x4 scores
# 34.41 dB mean Y-PSNR and 8.64 temporal error against 34.09 / 8.75 for the per-frame srresnet_real_x4, better on all
# seven chains. Images (and the scales it has no weights for) keep srresnet, the model of clean sources.
VIDEO_MODEL = "rsrresnet_real"


def default_model(input: Path, scale: int) -> str:
    """The model `vsr enhance` uses without -m/--weights: VIDEO_MODEL for videos, else srresnet (in a folder, each
    file gets its own: images srresnet, videos VIDEO_MODEL)."""
    from vsr import models, video

    if input.suffix.lower() in video.IMAGE_EXTS or not models.find_weights(VIDEO_MODEL, scale):
        return "srresnet"
    return VIDEO_MODEL


def _media_in(folder: Path, tag: str) -> list[Path]:
    from vsr import video

    exts = video.VIDEO_EXTS | video.IMAGE_EXTS
    # Our own outputs (stem_x4.ext) are skipped, so running twice on a folder does not upscale results again.
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.stem.endswith(f"_x{tag}")
    )


class _OneLineErrors(click.Command):
    """Bad option values give one `Error:` line and exit 1, like every other enhance error (not click's usage + 2)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message().splitlines()[0]) from None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@cli.command(cls=_OneLineErrors)
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (or folder for a folder input).  [default: <stem>_x<scale><ext> beside the input]")
@click.option("-s", "--scale", type=click.Choice(SCALES), default="4", show_default=True, help="Upscaling factor (with --weights: the file's, and -s only checks it).")
@click.option("-m", "--model", default="srresnet", help="Model: shipped weights name (vsr models) or bicubic; with --weights, the arch to check the file against.  [default: srresnet_real for video at x4 (chosen on compressed real footage), srresnet for images and other scales]")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights to load instead of the shipped ones: a vsr file, a training run folder or its ckpt.pt, or another project's .pth/.pt/.ckpt/.safetensors (Real-ESRGAN, ESRGAN, SwinIR, HAT, ...: vsr models --inspect FILE).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="Number format: auto = fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32.")
@click.option("--fp32", is_flag=True, help="Shorthand for --precision fp32.")
@click.option("-b", "--batch-size", type=click.IntRange(1, 256), default=None, help="Frames per model call.  [default: chosen from the frame size, model and machine; the start line says what and why]")
@click.option("-t", "--tile", type=click.IntRange(0), default=None, help="Process frames in LR tiles of this side (0 = whole frames).  [default: whole frames, or tiles where a whole frame would need more than the work memory budget]")
@click.option("--tile-pad", type=click.IntRange(0), default=None, help="Overlap around each tile, in LR pixels.  [default: the model's receptive field]")
@click.option("-c", "--codec", type=click.Choice(CODECS), default=None, help="Video encoder.  [default: by the output container: libx264; libvpx-vp9 for .webm; mpeg2video for .mpg/.vob; no B-frames into .avi]")
@click.option("--crf", type=click.IntRange(0, 63), default=None, help="Quality (lower is better; the quantiser 1-31 for mpeg2video/mpeg4).  [default: the encoder's visually lossless-ish setting, 18 for x264]")
@click.option("--preset", default=None, help="Encoder speed preset (e.g. medium, slow; for svtav1 0-13).  [default: medium]")
@click.option("--pix-fmt", default=None, help="Output pixel format (e.g. yuv420p, yuv420p10le).  [default: the input's bit depth, where the encoder has it]")
@click.option("--start", type=_Time(), default=None, help="Start time: seconds (12.5) or a timestamp (MM:SS, HH:MM:SS.mmm).  [default: the beginning]")
@click.option("--end", type=_Time(), default=None, help="End time, same forms as --start; audio and subtitles are cut to match.  [default: the end]")
@click.option("--keep-timestamps", is_flag=True, help="With --start: keep the source's clock (the excerpt starts at its time in the source) instead of starting every stream at 0.")
@click.option("--square-pixels", is_flag=True, help="Resample anamorphic input (16:9 DVD, DV) to square pixels at the same display aspect, after the model; default: keep the input's pixel aspect.")
@click.option("--deinterlace", type=click.Choice(DEINTERLACE_MODES), default="auto", show_default=True, help="auto: deinterlace interlaced sources (DVD, DV, broadcast) with bwdif at their frame rate; frame: always; field: one frame per field (double rate); off: never.")
@click.option("--no-audio", is_flag=True, help="Drop the audio tracks instead of copying them.")
@click.option("--no-subtitles", is_flag=True, help="Drop the subtitle tracks instead of copying them.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists (outputs appear only once complete), so rerunning a folder does only what is missing.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write each file's result (input, output, frames, seconds, model, status) to this JSON file.")
@click.option("--resume", is_flag=True, help="Encode in segments kept in .<output name>.vsr-resume/ beside the output; rerunning the same command after a crash, kill or Ctrl-C continues where it stopped (in a folder: each unfinished file where it stopped; finished ones are skipped).")
@click.option("--segment-frames", type=click.IntRange(1), default=None, help="Frames per --resume segment.  [default: about 10 s of video, or 300]")
@click.option("--outscale", type=click.FloatRange(min=1), default=None, help="Output size factor (e.g. 3 or 3.5 with a x4 model): the model's output resampled (antialiased bicubic) on the device.  [default: the model's scale]")
@click.option("--width", "out_width", type=click.IntRange(1), default=None, help="Output width in pixels; alone, the height keeps the aspect ratio.  [default: input width x scale]")
@click.option("--height", "out_height", type=click.IntRange(1), default=None, help="Output height in pixels; alone, the width keeps the aspect ratio.  [default: input height x scale]")
@click.option("-e", "--encoder-opt", "encoder_opts", multiple=True, metavar="KEY=VALUE", help="Encoder option passed to FFmpeg as is (repeatable), e.g. -e crf=17 -e tune=film, -e x265-params=aq-mode=3, -e svtav1-params=film-grain=8; checked before any work.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality of image outputs (100 on WebP: lossless).")
@click.option("--estimate", is_flag=True, help="Measure a few seconds of the input and print the time and output size of the whole file (or folder), writing nothing.")
@click.option("--generative", type=click.Choice(["yes", "no"]), default=None, help="Whether the weights were trained with an adversarial (GAN) loss, recorded in the output's provenance tags.  [default: what the weights' meta says; unknown for other projects' files]")
@threads_option
@click.pass_context
def enhance(ctx, input, output, scale, model, weights, device, precision, fp32, batch_size, tile, tile_pad, codec, crf, preset, pix_fmt, start, end, keep_timestamps, deinterlace, square_pixels, no_audio, no_subtitles, overwrite, skip_existing, report, resume, segment_frames, outscale, out_width, out_height, encoder_opts, quality, estimate, generative, threads):
    """Upscale a video (or an image, or every video/image in a folder) with a super-resolution model.

    Every frame is kept with its timestamp (checked at the end: frames in = frames out, last pts equal), and audio,
    subtitles, attachments and chapters are copied packet for packet. In a folder every file is attempted: each gets
    a line (done, skipped or failed and why), and the run exits with 1 if any failed.
    """
    import signal

    from vsr import pipeline

    from vsr import video

    if start is not None and end is not None and end <= start:
        raise VsrError(f"--end ({end:g} s) must be after --start ({start:g} s)")
    if outscale is not None and (out_width is not None or out_height is not None):
        raise VsrError("give --outscale or --width/--height, not both")
    if skip_existing and overwrite:
        raise VsrError("give --overwrite or --skip-existing, not both")
    if not input.exists():
        raise VsrError(f"no such file or folder: {input}")
    # Checked against the encoder this run will use: -c, else the output container's default (for a folder, that of
    # its first file's output).
    first = next(iter(_media_in(input, "")), input) if input.is_dir() else input
    target = output if output is not None and not input.is_dir() else pipeline.default_output_path(first, 1)
    encoder = codec or video.default_codec(target)
    options = video.user_encoder_options(encoder, parse_encoder_opts(encoder_opts))
    video.check_encoder_options(encoder, options, crf, preset, pix_fmt)
    cfg = pipeline.EnhanceConfig(
        batch_size=batch_size, tile=tile, tile_pad=tile_pad, device=device, precision="fp32" if fp32 else precision,
        codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, overwrite=overwrite, start=start, end=end,
        copy_audio=not no_audio, copy_subtitles=not no_subtitles, resume=resume, segment_frames=segment_frames,
        deinterlace=deinterlace, keep_timestamps=keep_timestamps, square_pixels=square_pixels,
        outscale=outscale, width=out_width, height=out_height, encoder_options=options, quality=quality,
    )
    # A weights file knows its scale: -s only checks it when typed.
    scale_given = ctx.get_parameter_source("scale") != ParameterSource.DEFAULT
    chosen = model if model_given(ctx) or weights else None  # else each file's default (images and videos differ)
    nets = {}

    def name_for(path: Path) -> str:
        return chosen or default_model(path, int(scale))

    def net_for(path: Path):
        name = name_for(path)
        if name not in nets:  # loaded once, at its first file
            nets[name] = load_cli_model(name, str(weights) if weights else None,
                                        int(scale) if scale_given or not weights else None, model_given(ctx))
            if generative:  # the user's word on a file that does not say (vsr.provenance)
                nets[name].meta = {**(getattr(nets[name], "meta", None) or {}), "generative": generative}
        return nets[name]

    def report_name(path: Path) -> str:
        return str(weights) if weights else name_for(path)

    def run_one(path: Path, out: Path) -> int:
        return _enhance_one(path, out, net_for(path), cfg)

    net = net_for(first)
    scale = int(net.scale)
    tag = f"{outscale:g}" if outscale else str(scale)
    if estimate:
        set_cpu_threads(threads)
        cli_compare.print_estimate(input, output, net, cfg, _media_in(input, tag) if input.is_dir() else None,
                                   startup=_startup_seconds())
        return
    # `kill` (SIGTERM) stops as cleanly as Ctrl-C: temp files removed, resume state kept.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
    from vsr.pipeline import ranks

    me = ranks.start(cfg) if ranks.launched() else None  # under torchrun: see vsr/cli_distributed.py
    set_cpu_threads(threads)
    try:
        if me is not None and report is not None:
            raise VsrError("--report is not available under torchrun (each rank prints its own files' lines)")
        if not input.is_dir():
            if me is not None:
                cli_distributed.enhance_one(input, output, net, cfg, me)
                return
            target = output or pipeline.default_output_path(input, cfg.outscale or scale)
            cli_folder.enhance_files([(input, target)], run_one, report_name, skip_existing, report, folder=False)
            return
        files = _media_in(input, tag)
        if not files:
            raise VsrError(f"no videos or images in folder {input}")
        if output is not None:
            try:
                output.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise VsrError(f"cannot create output folder {output}: {err.strerror or err}") from None
        jobs = [(path, (output or path.parent) / pipeline.default_output_path(path, cfg.outscale or scale).name)
                for path in files]
        # Rerunning a --resume folder run continues it: the outputs it finished are skipped, not in the way.
        skip = skip_existing or (resume and not overwrite)
        if me is not None:
            cli_distributed.enhance_folder(jobs, lambda path, out: _enhance_one(path, out, net_for(path), cfg, me.main),
                                           me, skip)
            return
        cli_folder.enhance_files(jobs, run_one, report_name, skip, report, folder=True)
    except KeyboardInterrupt as exc:
        click.echo(f"Error: interrupted; {getattr(exc, 'detail', 'no output was written')}", err=True)
        ctx.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if me is not None:
            ranks.finish()


def parse_encoder_opts(pairs: tuple[str, ...]) -> dict[str, str]:
    """-e KEY=VALUE pairs -> {KEY: VALUE} (the value may itself hold '=', as x265-params=aq-mode=3 does)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value:
            raise VsrError(f"-e/--encoder-opt takes KEY=VALUE (e.g. -e crf=17), got {pair!r}")
        options[key.strip()] = value
    return options


_RUN_AS_PROGRAM = False  # set by main(): `vsr` run from the shell, not a CliRunner inside another program


def _startup_seconds() -> float:
    """How long this `vsr` process took to get here (interpreter, imports, model load): a real run pays it too, so
    --estimate adds it. Linux only (/proc); 0 elsewhere, and inside another program (tests)."""
    if not _RUN_AS_PROGRAM:
        return 0.0
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = float(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _enhance_one(path: Path, output: Path | None, net, cfg, show_progress: bool = True) -> int:
    """Enhances one video or image, printing what it does; returns the frames written."""
    from tqdm import tqdm

    from vsr import pipeline, video

    if path.suffix.lower() in video.IMAGE_EXTS:
        out = pipeline.upscale_image(path, output, net, cfg)
        click.echo(f"{path} -> {out}", err=True)
        return 1
    bar = None

    def on_start(info, precision, device, plan):
        nonlocal bar
        interlaced = {"flagged": "interlaced", "tff": "interlaced tff", "bff": "interlaced bff"}.get(info.interlaced)
        source = ", ".join(x for x in (f"{info.width}x{info.height} {info.codec}", interlaced,
                                       f"SAR {info.sample_aspect_ratio}" if info.sample_aspect_ratio else None,
                                       f"{info.frames or '?'} frames") if x)
        steps = [f"deinterlaced (bwdif, one frame per {plan.deinterlace})" if plan.deinterlace else None,
                 f"{getattr(net, 'arch', 'model')} x{net.scale} on {device}, {precision.name} ({precision.reason})",
                 plan.work or f"batch {plan.batch_size}" + (f", tiles of {plan.tile}" if plan.tile else ""), plan.codec]
        click.echo(f"{path.name}: {source} -> {plan.width}x{plan.height}; " + "; ".join(x for x in steps if x),
                   err=True)
        total = info.frames
        if total and info.fps and (cfg.start is not None or cfg.end is not None):
            first = cfg.start or 0.0
            last = cfg.end if cfg.end is not None else (info.duration or total / float(info.fps))
            total = max(0, min(total, round((last - first) * float(info.fps))))
        if total and plan.deinterlace == "field":
            total *= 2
        bar = tqdm(total=total or None, unit="frame", desc="enhance", dynamic_ncols=True, file=sys.stderr,
                   disable=not show_progress)
        clock.append(cli_compare.RunEstimate(bar, total))

    clock = []  # the expected duration, printed once known and kept in the bar (vsr.estimate.RunClock)
    try:
        result = pipeline.enhance_video(path, output, net, cfg, progress=lambda n: clock[0].update(n),
                                        on_start=on_start)
    finally:
        if bar is not None:
            bar.close()
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    reused = f", {result.reused_frames} reused from an earlier run" if result.reused_frames else ""
    last = f" ({result.last_time:.3f} s)" if result.last_time is not None else ""
    click.echo(
        f"{result.output}: {result.frames_out}/{result.frames_in} frames, last pts {result.last_pts_out}/"
        f"{result.last_pts_in}{last}, verified{reused}; {result.width}x{result.height},"
        f" {result.seconds:.1f} s ({result.fps:.2f} fps)",
        err=True,
    )
    return result.frames_out


# models, bench, train / eval / prepare live in their own modules; registered here so `vsr` is one group.
cli.add_command(list_models_cmd, "models")
cli.add_command(bench_cmd, "bench")
cli.add_command(train_cmd, "train")
cli.add_command(eval_cmd, "eval")
cli.add_command(prepare_cmd, "prepare")
cli.add_command(cli_compare.compare_cmd, "compare")
cli.add_command(cli_compare.info_cmd, "info")


def main() -> None:
    global _RUN_AS_PROGRAM
    from vsr.models.fast import keep_freed_memory

    _RUN_AS_PROGRAM = True

    # The `vsr` process's own allocator choice (see keep_freed_memory): every model call frees and reallocates the
    # same large activations. Made here, never on import or inside the library, where the process is the caller's.
    keep_freed_memory()
    cli(prog_name="vsr")


if __name__ == "__main__":
    main()
