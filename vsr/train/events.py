"""TensorBoard event files of a run (RUN/tb/), where BasicSR users look for their curves; written next to log.jsonl
and curves.png when the optional ``tensorboard`` package is installed (``pip install 'vsr[tensorboard]'``), skipped
without a word otherwise: log.jsonl stays the record."""

from __future__ import annotations

from pathlib import Path


class EventLog:
    """Scalars (losses, learning rate, it/s, validation PSNR/SSIM) as TensorBoard events under ``run/tb``.

    Args:
        run: the run folder.
        step: the step the run starts (or resumes) at; events a previous run wrote after it are purged, as
            log.jsonl's lines are, since those steps are trained again.
    """

    def __init__(self, run: Path, step: int):
        from torch.utils.tensorboard import SummaryWriter  # ImportError without the tensorboard package

        self.writer = SummaryWriter(log_dir=str(run / "tb"), purge_step=step if step else None)

    @classmethod
    def open(cls, run: Path, step: int) -> EventLog | None:
        """An EventLog, or None where tensorboard is not installed."""
        try:
            return cls(run, step)
        except ImportError:
            return None

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def close(self) -> None:
        self.writer.close()
