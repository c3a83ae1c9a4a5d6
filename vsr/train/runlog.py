"""What a run tells its user and keeps on record: console lines (above the progress bar), log.jsonl, and the Ctrl-C
and SIGTERM handling that lets a run end at a step boundary with its checkpoint written."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from tqdm import tqdm


def log(message: str) -> None:
    """One line on stderr, above the tqdm bar."""
    tqdm.write(message, file=sys.stderr)


def describe_val(val: Path | None) -> str:
    """The validation source as the run's first line names it."""
    if val is None:
        return "none (pass --val DIR, e.g. a benchmark folder, or prepare the data with vsr prepare --holdout)"
    return str(val)


def append_log(path: Path, record: dict) -> None:
    """Appends one JSON object (it has a "step") as a line of log.jsonl."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Drops the lines after `step`: a resumed run trains those steps again and logs them anew."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


class GracefulStop:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop at the end of the current step; a second interrupts at once.

    SIGTERM is how Slurm preempts a job and how torchrun stops its workers, so a preempted run checkpoints and exports
    its weights like a Ctrl-C'd one, and its requeued job resumes where it stopped.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
