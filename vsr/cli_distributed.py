"""`vsr enhance` under torchrun (WORLD_SIZE > 1): one video's segments or a folder's files across the ranks.

Rank 0 alone shows the start line and the progress bar (frames done by all ranks together) and says how the run
ended; another rank speaks only for its own failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from vsr.errors import VsrError


def enhance_one(path: Path, output: Path | None, net, cfg, me) -> None:
    """One video (its segments shared out) or, on rank 0 alone, one image."""
    from tqdm import tqdm

    from vsr import pipeline, video
    from vsr.pipeline import distributed

    if path.suffix.lower() in video.IMAGE_EXTS:
        if me.main:
            click.echo(f"{path} -> {pipeline.upscale_image(path, output, net, cfg)}", err=True)
        return
    bar = None

    def on_start(started: distributed.Started) -> None:
        nonlocal bar
        info, plan = started.info, started.plan
        click.echo(f"{path.name}: {info.width}x{info.height} {info.codec}, {started.frames} frames -> "
                   f"{plan.width}x{plan.height}; {getattr(net, 'arch', 'model')} x{net.scale} on {me.world} ranks "
                   f"({started.device} on rank 0), {started.precision.name}; {started.segments} segments, "
                   f"{started.missing} to do; {plan.codec}", err=True)
        bar = tqdm(total=started.frames, initial=started.done_frames, unit="frame", desc="enhance",
                   dynamic_ncols=True, file=sys.stderr)

    def progress(done: int) -> None:
        if bar is not None and done > bar.n:
            bar.update(done - bar.n)

    try:
        result = distributed.enhance_video_distributed(path, output, net, cfg, me, on_start, progress)
    except distributed.Refused:
        raise SystemExit(1) from None  # rank 0 says why
    finally:
        if bar is not None:
            bar.close()
    if result is None:
        return
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    reused = f", {result.reused_frames} reused from an earlier run" if result.reused_frames else ""
    click.echo(f"{result.output}: {result.frames_out}/{result.frames_in} frames, last pts {result.last_pts_out}/"
               f"{result.last_pts_in}, verified{reused}; {result.width}x{result.height}, {result.seconds:.1f} s "
               f"({result.fps:.2f} fps over {me.world} ranks)", err=True)


def enhance_folder(jobs: list[tuple[Path, Path]], run_one: Callable[[Path, Path], int], me,
                   skip_existing: bool = False) -> None:
    """Every world-th file of a folder on each rank (``run_one`` is the single-process enhance of one file); each
    rank attempts all of its files, as a single process does (`vsr.pipeline.folder`)."""
    from vsr.pipeline import folder, ranks

    mine = ranks.shard(jobs, me)
    results = folder.run_files(mine, run_one, skip_existing=skip_existing,
                               on_result=lambda _, result: click.echo(f"rank {me.rank}: {result.line()}", err=True))
    failed = "; ".join(f"{Path(r.input).name}: {r.reason}" for r in results if r.status == "failed") or None
    outcomes = ranks.gather_outcomes(failed, me)
    if failed is not None:
        raise VsrError(f"rank {me.rank}: {failed}")
    bad = [(rank, text) for rank, text in enumerate(outcomes) if text is not None]
    if me.main and bad:
        left = [path.name for rank, _ in bad for path, out in ranks.shard(jobs, ranks.Rank(rank, me.world))
                if out is None or not Path(out).exists()]
        raise VsrError(f"{len(bad)} rank(s) failed ({'; '.join(f'rank {r}: {t}' for r, t in bad)}); not done: "
                       f"{', '.join(left)}; rerun the same command to finish them")
