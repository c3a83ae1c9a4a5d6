"""Many files in one run (`vsr enhance FOLDER`): every file is attempted, whatever happens to the others.

A file that fails (damaged, not a video, an output in the way) is reported and the run goes on to the next; the
run as a whole fails at the end if any file did. Outputs only ever appear complete (see `vsr.atomic`), so an output
that exists is a finished one: with ``skip_existing`` a rerun does only what is missing. The per-file results can be
written as JSON (input, output, frames, seconds, model, status), rewritten after every file so that an interrupted
run leaves an accurate report too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vsr.atomic import atomic_write
from vsr.errors import VsrError

STATUSES = ("done", "skipped", "failed")


@dataclass
class FileResult:
    """What happened to one file. ``reason`` says why it was skipped or failed; ``frames`` counts frames written
    (1 for an image); ``seconds`` is the wall time spent on it."""

    input: str
    output: str
    status: str
    model: str | None = None
    frames: int | None = None
    seconds: float | None = None
    reason: str | None = None
    error: BaseException | None = field(default=None, repr=False, compare=False)  # not in the report

    def line(self) -> str:
        """One line for the terminal: ``a.mp4: done -> a_x4.mp4 (300 frames, 12.3 s)``."""
        name = Path(self.input).name
        if self.status == "done":
            return f"{name}: done -> {Path(self.output).name} ({self.frames} frames, {self.seconds:.1f} s)"
        return f"{name}: {self.status}: {self.reason}"


def run_files(jobs: list[tuple[Path, Path]], run_one: Callable[[Path, Path], int], *,
              model_for: Callable[[Path], str | None] = lambda path: None, skip_existing: bool = False,
              report: str | os.PathLike | None = None,
              on_result: Callable[[int, FileResult], None] | None = None) -> list[FileResult]:
    """Runs ``run_one(input, output)`` on every job, going on after a failure.

    Args:
        jobs: (input, output) pairs, in order.
        run_one: enhances one file and returns the frames it wrote; raises VsrError (or any exception) on failure.
            KeyboardInterrupt is not caught: Ctrl-C stops the whole run (after the report is written).
        model_for: the model name a file runs with, for the report.
        skip_existing: skip a job whose output exists (outputs appear only once complete).
        report: a JSON file to write the results to, after every file.
        on_result: called with the job's index and its result as each file ends (the CLI prints the line).

    Returns:
        One result per job that was reached, in order.
    """
    results: list[FileResult] = []
    try:
        for index, (path, output) in enumerate(jobs):
            result = FileResult(str(path), str(output), "skipped", model=model_for(path))
            if skip_existing and output.exists():
                result.reason = f"{output.name} exists"
            else:
                started = time.perf_counter()
                try:
                    result.frames = run_one(path, output)
                    result.status = "done"
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others; each is reported
                    result.status, result.error = "failed", exc
                    result.reason = str(exc) if isinstance(exc, VsrError) else f"{type(exc).__name__}: {exc}"
                    result.reason = (result.reason.strip().splitlines() or ["unknown error"])[0]
                result.seconds = time.perf_counter() - started
            results.append(result)
            if report is not None:
                write_report(report, results)
            if on_result is not None:
                on_result(index, result)
    finally:
        if report is not None:
            write_report(report, results)
    return results


def summary(results: list[FileResult], total: int | None = None) -> str:
    """``3 files: 2 done, 0 skipped, 1 failed (b.mp4)``; files never reached (an interrupted run) are counted too."""
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    total = len(results) if total is None else total
    text = f"{total} file{'s' if total != 1 else ''}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = [Path(r.input).name for r in results if r.status == "failed"]
    if failed:
        text += f" ({', '.join(failed)})"
    if total > len(results):
        text += f", {total - len(results)} not reached"
    return text


def write_report(path: str | os.PathLike, results: list[FileResult]) -> None:
    """Writes the results as JSON: ``{"files": [{input, output, frames, seconds, model, status, reason}, ...],
    "done": n, "skipped": n, "failed": n}``, replacing the file whole."""
    files = [{"input": r.input, "output": r.output, "frames": r.frames,
              "seconds": None if r.seconds is None else round(r.seconds, 3), "model": r.model, "status": r.status,
              "reason": r.reason} for r in results]
    body = {"files": files, **{status: sum(r.status == status for r in results) for status in STATUSES}}
    try:
        with atomic_write(path) as temp:
            temp.write_text(json.dumps(body, indent=2) + "\n")
    except OSError as err:
        raise VsrError(f"cannot write the report {path}: {err.strerror or err}") from None
