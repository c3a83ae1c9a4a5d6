"""`vsr enhance` over several files (a folder, or one file with --skip-existing / --report): a line per file, a
summary, exit 1 if any failed. The running and the report are `vsr.pipeline.folder`; this module only speaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from vsr.errors import VsrError


def enhance_files(jobs: list[tuple[Path, Path]], run_one: Callable[[Path, Path], int],
                  model_for: Callable[[Path], str], skip_existing: bool, report: Path | None, folder: bool) -> None:
    """Attempts every job (see `vsr.pipeline.folder.run_files`).

    A folder gets a ``[i/n] name: done|skipped|failed: reason`` line per file and a summary, and raises VsrError
    naming the failed files at the end; a single file re-raises its own error, as a plain run would.
    """
    from vsr.pipeline import folder as folder_run

    def on_result(index: int, result) -> None:
        if folder:
            click.echo(f"[{index + 1}/{len(jobs)}] {result.line()}", err=True)
        elif result.status == "skipped":
            click.echo(result.line(), err=True)

    results = folder_run.run_files(jobs, run_one, model_for=model_for, skip_existing=skip_existing, report=report,
                                   on_result=on_result)
    failed = [r for r in results if r.status == "failed"]
    if not folder:
        if failed:
            raise failed[0].error
        return
    click.echo(f"Summary: {folder_run.summary(results)}", err=True)
    if failed:
        raise VsrError(f"{len(failed)} of {len(results)} files failed: {', '.join(Path(r.input).name for r in failed)}")
