"""Running every model of a comparison on the same excerpt through the normal pipeline (`enhance_video`), keeping
one frame of each (the same one) and what each run cost."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from torch import nn

from vsr import provenance, video
from vsr.data import to_uint8
from vsr.pipeline.estimate import range_frames, timed_enhance
from vsr.pipeline import EnhanceConfig
from vsr.pipeline.plan import RunPlan
from vsr.pipeline.sinks import FrameSink, open_sink


@dataclass
class ModelRun:
    """One model's run on the excerpt.

    Attributes:
        label: the name shown everywhere (unique within the comparison).
        output: its upscaled excerpt (a playable video in the comparison folder).
        frame: the chosen frame, (H, W, 3) uint8 RGB.
        frames: frames in the excerpt.
        seconds: the whole run's time (start-up included).
        per_frame: seconds per frame after the plan, the encoder's final flush included (`Timing`).
        whole_input: expected seconds for the whole input at that rate.
        tags: its provenance (`vsr.provenance.model_tags`).
        first_pts: pts of the excerpt's first frame on the source's clock (the output starts at 0).
        time_base: of ``first_pts`` (the source video's).
    """

    label: str
    output: Path
    frame: np.ndarray
    frames: int
    seconds: float
    per_frame: float
    whole_input: float | None
    tags: dict[str, str]
    first_pts: int | None
    time_base: Fraction


class _Keeping:
    """A sink that passes every frame on to the run's own sink and keeps a copy of frame number ``keep_at``."""

    def __init__(self, inner: FrameSink, keep_at: int):
        self.inner, self.keep_at = inner, keep_at
        self.seen = 0
        self.frame: np.ndarray | None = None
        self.first_pts: int | None = None

    def __getattr__(self, name):  # index, span, window, reused, finished, warnings, finish, abort, describe
        return getattr(self.inner, name)

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        if self.first_pts is None and len(pts):
            self.first_pts = int(pts[0])
        # Kept: the last frame numbered up to ``keep_at`` (the last one of a shorter excerpt than its duration says).
        last = min(self.keep_at - self.seen, len(pts) - 1)
        if last >= 0:
            self.frame = to_uint8(np.array(frames[last]))
        self.seen += len(pts)
        self.inner.write(frames, pts)


def run_models(input_path: Path, folder: Path, models: list[tuple[str, nn.Module]], cfg: EnhanceConfig,
               report: Callable[[str], None] | None = None) -> list[ModelRun]:
    """Runs each ``(label, model)`` on the excerpt ``cfg.start``..``cfg.end`` into ``folder/<label>.mp4``.

    Args:
        input_path: the source video.
        folder: where the per-model excerpts go (created).
        models: labelled, loaded models.
        cfg: the run's options (start and end set to the excerpt).
        report: called with one line per finished model.

    Returns:
        One :class:`ModelRun` per model, in order; each has the same frame (the excerpt's middle one).
    """
    info = video.probe(input_path)
    excerpt, _ = range_frames(info, cfg.start, cfg.end)
    whole, _ = range_frames(info, None, None)
    keep_at = max(0, (excerpt or 1) // 2)
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for label, model in models:
        keeping: list[_Keeping] = []

        def sink(plan: RunPlan) -> FrameSink:
            keeping.append(_Keeping(open_sink(plan), keep_at))
            return keeping[0]

        target = folder / f"{label}.mp4"
        result, timing = timed_enhance(input_path, target, model,
                                       dataclasses.replace(cfg, overwrite=True, resume=False), sink_factory=sink)
        runs.append(ModelRun(label, target, keeping[0].frame, result.frames_out, timing.took, timing.per_frame,
                             timing.total(whole) if whole else None, provenance.model_tags(model, result.precision),
                             keeping[0].first_pts, result.time_base))
        if report:
            report(f"{label}: {result.frames_out} frames in {timing.took:.1f} s ({timing.per_frame:.3g} s/frame)")
    return runs
