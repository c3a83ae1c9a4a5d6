"""Distributed enhance under torchrun: the `--resume` segments of one video, or the files of a folder, across ranks.

Launched as ``torchrun --nproc_per_node N -m vsr enhance ...`` (``WORLD_SIZE`` > 1 in the environment), every rank
runs the same command. Coordination is split in two, by what each part needs to survive:

- Control messages go through a torch.distributed process group on **gloo**, also on CUDA machines: they are a few
  small Python objects (the segment plan from rank 0, every rank's outcome at the end), not tensors, so NCCL would
  add nothing but a GPU context. torchrun's rendezvous gives multi-node runs for free.
- The work itself lives in the **shared file system**, in the target's ``--resume`` state folder: every segment is
  a file renamed into place once complete plus a small record (`resume.write_record`). Whatever a killed rank
  finished is therefore kept, and a rerun of the same command does only the segments that are missing.

Rank 0 takes the state's lock (a second run on the same output refuses in one line), makes (or reuses) the input's
frame index from its packets (`video.index_video`, kept in the state folder: no decode of the whole video), so
segment boundaries are exactly those of a single-process ``--resume`` run with the same segment size, and hands
the missing segments out in contiguous runs with the index. Each rank reads each of its runs as a window of the
index (`video.read_frames`: from a keyframe early enough, each frame checked to be the one listed; a recurrent
model starts a few frames early to warm its state), writes those segments with the segmenter of ``--resume``
(`sinks.Segmenter`), each checked against the index. After a barrier rank 0 merges the records into the manifest
and joins, and the joined file is checked against the index, as ``--resume`` does.

A rank whose share fails still lets the others finish theirs; rank 0 then exits non-zero naming what is left.
A rank killed outright makes torchrun stop the others (SIGTERM, which stops them as Ctrl-C does, keeping every
finished segment); ``torchrun --max-restarts K`` reruns the group, which then completes the missing segments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vsr import video
from vsr.errors import VsrError
from vsr.pipeline.enhance import EnhanceResult, Interrupted, enhance_video
from vsr.pipeline.plan import EnhanceConfig, OutputPlan, RunPlan
from vsr.pipeline.ranks import Rank, gather_outcomes
from vsr.pipeline.resume import RECORD_SUFFIX, ResumeState, segment_index, state_dir, write_record
from vsr.pipeline.sinks import Segmenter, SegmentSink, output_check, resume_parts, run_index

@dataclass
class SegmentPlan:
    """Rank 0's plan, sent to every rank: the input's frame index and the run's span of it, the segment size and
    which segments are missing."""

    identity: dict
    index: video.FrameIndex | None
    span: tuple[int, int]
    segment_frames: int
    missing: list[int]
    done_frames: int
    error: str | None = None

    @property
    def times(self) -> list[int]:
        """pts of the run's frames."""
        return self.index.times[self.span[0] : self.span[1]] if self.index is not None else []

    @property
    def count(self) -> int:
        return -(-(self.span[1] - self.span[0]) // self.segment_frames)

    def bounds(self, k: int) -> tuple[int, int]:
        """First and one-past-last frame of segment ``k``."""
        return k * self.segment_frames, min((k + 1) * self.segment_frames, self.span[1] - self.span[0])

    def share(self, me: Rank) -> list[tuple[int, int]]:
        """This rank's missing segments, a contiguous slice of them, as runs ``(first, one past last)``."""
        m = len(self.missing)
        mine = self.missing[me.rank * m // me.world : (me.rank + 1) * m // me.world]
        runs: list[tuple[int, int]] = []
        for k in mine:
            if runs and runs[-1][1] == k:
                runs[-1] = (runs[-1][0], k + 1)
            else:
                runs.append((k, k + 1))
        return runs


class WindowSink:
    """Writes segments ``first`` .. ``stop - 1`` of a plan, each checked against the plan's index, with a record each.

    A `vsr.pipeline.sinks.FrameSink`; its ``window`` of the index is what it decodes.
    """

    def __init__(self, plan: SegmentPlan, first: int, stop: int, folder: Path, suffix: str,
                 open_writer: Callable[[Path], video.VideoWriter]):
        self.plan = plan
        self.index, self.span = plan.index, plan.span
        self.begin, self.end = plan.bounds(first)[0], plan.bounds(stop - 1)[1]
        self.window = (self.span[0] + self.begin, self.span[0] + self.end)
        self.reused = self.reused_segments = 0  # the plan leaves finished segments out of every window
        self.finished = False
        self._segments = Segmenter(plan.times, plan.bounds, first, folder, suffix, open_writer,
                                   lambda segment: write_record(folder, segment))
        self.warnings = self._segments.warnings

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        self._segments.write(frames, pts)

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        expected = self.plan.times[self.end - 1]
        if frames_in != self.end - self.begin or last_pts_in != expected or self._segments.writer is not None:
            raise VsrError(f"decoded {frames_in} frames ending at pts {last_pts_in} for frames {self.begin}-"
                           f"{self.end - 1}, expected {self.end - self.begin} ending at {expected}")
        return frames_in, last_pts_in

    def abort(self) -> None:
        self._segments.abort()

    def describe(self) -> str:
        return "finished segments kept"


class _NoWindow(Exception):
    """Raised by the sink factory when this rank has no (more) segments: `enhance_video` then starts nothing."""


class Refused(VsrError):
    """Rank 0 refused the run (and said why); the other ranks stop without repeating it."""


@dataclass
class Started:
    """What rank 0 tells the CLI before the work: for the start line and the progress bar."""

    info: video.VideoInfo
    precision: object
    device: torch.device
    plan: OutputPlan
    frames: int
    done_frames: int
    segments: int
    missing: int


def enhance_video_distributed(input_path: Path, output_path: Path | None, model: nn.Module, cfg: EnhanceConfig,
                              me: Rank, on_start: Callable[[Started], None] | None = None,
                              progress: Callable[[int], None] | None = None) -> EnhanceResult | None:
    """One video across the ranks of a torchrun job. Every rank calls it; rank 0 returns the joined result.

    Args:
        input_path, output_path, model, cfg: as `enhance_video` (the output is segmented whatever ``cfg.resume``).
        me: this rank (`start`).
        on_start: rank 0 only: called once the plan is made.
        progress: rank 0 only: called with the frames done so far by all ranks together.

    Returns:
        The result on rank 0, None on the others. Raises VsrError (rank 0: naming the segments left) when any rank
        failed, `vsr.pipeline.Interrupted` on SIGTERM/Ctrl-C.
    """
    run = _Run(input_path, output_path, model, cfg, me, on_start, progress)
    outcome = None
    try:
        run.work()
    except Refused:
        raise
    except VsrError as err:
        if not run.planned:
            raise
        outcome = str(err)
    except KeyboardInterrupt:
        if run.state is not None:
            run.state.adopt_records()
            raise Interrupted(run.left()) from None
        raise
    except Exception as err:  # noqa: BLE001 - the other ranks must still hear from this one
        if not run.planned:
            raise
        outcome = f"{type(err).__name__}: {err}".splitlines()[0]
    outcomes = gather_outcomes(outcome, me, run.show_progress if me.main else None)
    if outcome is not None:
        raise VsrError(f"rank {me.rank}: {outcome}")
    if not me.main:
        return None
    run.show_progress(force=True)
    return run.join([f"rank {r}: {o}" for r, o in enumerate(outcomes) if o is not None])


class _Run:
    """The state of one distributed video on one rank (see `enhance_video_distributed`)."""

    def __init__(self, input_path, output_path, model, cfg, me, on_start, progress):
        self.input_path, self.model, self.cfg, self.me = Path(input_path), model, cfg, me
        self.output_path = output_path
        self.on_start, self.progress = on_start, progress
        self.plan: SegmentPlan | None = None
        self.planned = False
        self.state: ResumeState | None = None
        self.runs: list[tuple[int, int]] = []
        self.own = 0
        self.started = time.perf_counter()
        self.facts: dict = {}
        self._polled = 0.0

    def work(self) -> None:
        while True:
            try:
                enhance_video(self.input_path, self.output_path, self.model, self.cfg, progress=self._own_progress,
                              sink_factory=self._sink)
            except _NoWindow:
                return

    def _sink(self, run: RunPlan) -> WindowSink:
        parts = resume_parts(run)
        target = run.output_path
        suffix = video.segment_suffix(target)
        if not self.planned:
            self._plan(parts, target, suffix, run)
        if not self.runs:
            raise _NoWindow
        first, stop = self.runs.pop(0)
        return WindowSink(self.plan, first, stop, state_dir(target), suffix, parts.open_writer)

    def _plan(self, parts, target, suffix, run: RunPlan) -> None:
        """Rank 0 makes the plan and sends it; the others receive it (a collective: every rank comes here once)."""
        message = [None]
        if self.me.main:
            try:
                message[0] = self._make_plan(parts, target, suffix, run)
            except VsrError as err:
                message[0] = SegmentPlan({}, None, (0, 0), 1, [], 0, error=str(err))
            except Exception as err:  # noqa: BLE001 - the other ranks wait for this message
                message[0] = SegmentPlan({}, None, (0, 0), 1, [], 0,
                                         error=f"{type(err).__name__}: {err}".splitlines()[0])
        dist.broadcast_object_list(message, src=0)
        plan: SegmentPlan = message[0]
        self.planned = plan.error is None
        if plan.error is not None:
            raise (VsrError if self.me.main else Refused)(plan.error)
        if plan.identity != parts.identity:
            raise VsrError("this rank's input, model or settings differ from rank 0's (same files on every node?)")
        self.plan, self.runs = plan, plan.share(self.me)
        self.facts = {"join": parts.join, "open_writer": parts.open_writer, "target": target, "run": run}
        if self.me.main and self.on_start:
            self.on_start(Started(run.info, run.upscaler.precision, run.upscaler.device, run.output, len(plan.times),
                                  plan.done_frames, plan.count, len(plan.missing)))
            self.show_progress()

    def _make_plan(self, parts, target, suffix, run: RunPlan) -> SegmentPlan:
        video.check_output_path(target, self.input_path, self.cfg.overwrite)
        self.state = ResumeState(target, parts.identity, suffix, sparse=True)
        index = run_index(run, self.state.dir)
        span = index.span(self.cfg.start, self.cfg.end)
        if span[0] == span[1]:
            raise VsrError(f"no frames in {self.input_path} in the chosen range")
        plan = SegmentPlan(parts.identity, index, span, parts.segment_frames, [], 0)
        times = plan.times
        done = set()
        for seg in self.state.segments:
            k = segment_index(seg.file)
            lo, hi = plan.bounds(k) if k < plan.count else (0, 0)
            if hi <= lo or (seg.frames, seg.first_pts, seg.last_pts) != (hi - lo, times[lo], times[hi - 1]):
                raise VsrError(f"resume state {self.state.dir} holds segments of another size than "
                               f"{plan.segment_frames} frames; rerun with the same --segment-frames, or delete that "
                               "folder to start over")
            done.add(k)
        plan.missing = [k for k in range(plan.count) if k not in done]
        plan.done_frames = sum(seg.frames for seg in self.state.segments)
        return plan

    def _own_progress(self, n: int) -> None:
        self.own += n
        self.show_progress()

    def show_progress(self, force: bool = False) -> None:
        """Rank 0: reports the frames done by all ranks (records of the others, polled at most twice a second)."""
        if not (self.me.main and self.progress and self.plan):
            return
        now = time.monotonic()
        if now - self._polled < 0.5 and self.own and not force:
            return
        self._polled = now
        mine = {k for first, stop in self.plan.share(self.me) for k in range(first, stop)}
        others = 0
        for record in self.state.dir.glob("seg-*" + RECORD_SUFFIX):
            k = segment_index(record.name)
            if k not in mine and k in self.plan.missing:
                lo, hi = self.plan.bounds(k)
                others += hi - lo
        self.progress(self.plan.done_frames + self.own + others)

    def left(self) -> str:
        """The segments not finished, for the one-line message."""
        if self.plan is None:
            return f"stopped before any segment was handed out; the state is in {self.state.dir}"
        done = {segment_index(seg.file) for seg in self.state.segments}
        missing = [k for k in range(self.plan.count) if k not in done]
        if not missing:
            return f"every segment is finished in {self.state.dir}; rerun the same command to join them"
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        return (f"{len(missing)} of {self.plan.count} segments left (seg {shown}), the finished ones kept in "
                f"{self.state.dir}; rerun the same command to finish them")

    def join(self, failures: list[str]) -> EnhanceResult:
        """Rank 0, after the barrier: merges the records and joins the segments onto the target."""
        self.state.adopt_records()
        if failures or len(self.state.segments) != self.plan.count:
            self.state.release()
            raise VsrError("; ".join(failures + [self.left()]))
        plan, facts = self.plan, self.facts
        run, target, times = facts["run"], facts["target"], plan.times
        sink = SegmentSink(self.state, plan.segment_frames, facts["open_writer"], facts["join"], plan.index,
                           plan.span, output_check(run, plan.index, plan.span, target))
        frames_out, last_pts_out = sink.finish(len(times), times[-1], target, self.cfg.overwrite)
        upscaler, output_plan = run.upscaler, run.output
        return EnhanceResult(
            output=str(target), frames_in=len(times), frames_out=frames_out,
            seconds=time.perf_counter() - self.started, device=f"{upscaler.device} x {self.me.world} ranks",
            precision=upscaler.precision.name, precision_reason=upscaler.precision.reason,
            width=output_plan.width, height=output_plan.height, notes=list(sink.warnings),
            last_pts_in=times[-1], last_pts_out=last_pts_out, time_base=output_plan.time_base,
            reused_frames=plan.done_frames,
        )
