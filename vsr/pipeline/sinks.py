"""Where the upscaled frames of `enhance` go: the :class:`FrameSink` interface and its implementations.

- :class:`TargetSink`: one `VideoWriter` onto the target (temp file + rename), the plain plan.
- :class:`SegmentSink`: ``--resume`` segments in the state folder (`vsr.pipeline.resume`), joined onto the target.
- `vsr.pipeline.distributed.WindowSink`: one rank's window of segments in a torchrun job.

Every sink works from the source's frame index (`video.index_video`): it names the frames it still needs as a
window of the index, receives them in order with their pts, and before anything reaches the target path checks
the output, read back from its packets, against the index's frames for the requested range (`video.check_times`):
a missing or extra frame is an error naming it, and the output is discarded. Both segmented sinks cut frames into
segments with one :class:`Segmenter`.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vsr import video
from vsr.atomic import atomic_write
from vsr.errors import VsrError
from vsr.pipeline.plan import RunPlan
from vsr.pipeline.resume import INDEX, ResumeState, Segment, input_identity, model_identity, segment_name, state_dir


@runtime_checkable
class FrameSink(Protocol):
    """What `enhance_video` writes to. The read-only facts tell the decoder which frames to give it."""

    @property
    def index(self) -> video.FrameIndex:
        """The source's frames (after deinterlacing), each with its pts."""

    @property
    def span(self) -> tuple[int, int]:
        """Frames ``[first, stop)`` of ``index`` the whole run covers (the ``--start``/``--end`` range)."""

    @property
    def window(self) -> tuple[int, int]:
        """Frames ``[first, stop)`` of ``index`` this sink still needs, in order."""

    @property
    def reused(self) -> int:
        """Frames an earlier run finished (counted as decoded and written, never decoded again)."""

    @property
    def reused_segments(self) -> int:
        """Segments holding the ``reused`` frames (for the note)."""

    @property
    def finished(self) -> bool:
        """Every frame is already done: nothing is decoded, only `finish` is left."""

    @property
    def warnings(self) -> list[str]:
        """Lines about what the writers left out or converted (for the result's notes)."""

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        """Encodes (N, H, W, 3) frames with their pts, in order."""

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        """Closes the output, checks it holds ``frames_in`` frames ending at ``last_pts_in`` and exactly the
        index's frames of ``span``, and lets it onto ``target``. Returns (frames, last pts) written; raises
        VsrError (and writes nothing) when they differ."""

    def abort(self) -> None:
        """Drops unfinished output after a failure; what is kept is for `describe` to say."""

    def describe(self) -> str:
        """What an interrupted run leaves behind, for the one-line message."""


def run_index(plan: RunPlan, folder: Path | None = None) -> video.FrameIndex:
    """The input's frame index for this run's deinterlacing; kept in (and reused from) ``folder``, a resume state."""
    path, cfg = plan.input_path, plan.cfg
    saved = folder / INDEX if folder is not None else None
    if saved is not None:
        found = video.FrameIndex.load(saved, video.index_identity(path, plan.output.deinterlace))
        if found is not None:
            return found
    index = video.index_video(path, plan.info, cfg.deinterlace)
    if saved is not None:
        try:
            with atomic_write(saved) as temp:
                index.save(temp)
        except OSError as err:
            raise VsrError(f"cannot write resume state {folder}: {err.strerror or err}") from None
    return index


def output_check(plan: RunPlan, index: video.FrameIndex, span: tuple[int, int],
                 target: Path) -> Callable[[Path], None]:
    """``check(path)``: raises VsrError unless ``path`` holds exactly frames ``span`` of ``index`` (see
    `video.check_times`), on the output's clock (rebased to 0 for an excerpt)."""
    expected = index.times[span[0] : span[1]]
    shift = expected[0] if plan.rebase and expected else 0

    def check(path: Path) -> None:
        video.check_times(path, expected, index.time_base, shift, name=target)

    return check


class TargetSink:
    """Writes every frame with one `VideoWriter` onto the target (temp + rename); checks in == out before the rename.

    Args:
        writer: the target's writer (opened with ``check=output_check(...)``, so the rename waits for the check).
        index: the source's index; span: the run's frames in it.
    """

    def __init__(self, writer: video.VideoWriter, index: video.FrameIndex, span: tuple[int, int]):
        self.writer = writer
        self.index, self.span = index, span
        self.window = span
        self.warnings = writer.warnings
        self.reused = self.reused_segments = 0
        self.finished = False

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        self.writer.write(frames, pts)

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        frames_out, last_pts_out = self.writer.frames_written, self.writer.last_pts
        if frames_out != frames_in or last_pts_out != last_pts_in:
            raise VsrError(f"decoded {frames_in} frames ending at pts {last_pts_in} but wrote {frames_out} ending at "
                           f"{last_pts_out}; output discarded")
        self.writer.close()  # reads the file back against the index before the rename
        return frames_out, last_pts_out

    def abort(self) -> None:
        self.writer.abort()

    def describe(self) -> str:
        return "no output was written"


class Segmenter:
    """Cuts the frames it is given into segment files, each checked against the index and announced when done: the
    one segmenting loop of ``--resume`` (`SegmentSink`) and of torchrun ranks (`WindowSink`).

    Args:
        times: pts of the run's frames (the index's span), which segment bounds count in.
        bounds: ``bounds(k)`` -> (first, one past last) frame of ``times`` in segment ``k``.
        first: the first segment to write; frames arrive from its first frame on.
        folder: where segment files go, named `resume.segment_name` (``suffix``).
        open_writer: opens a `VideoWriter` (video only) on a segment path.
        done: called with each finished segment (its file renamed into place).
    """

    def __init__(self, times: list[int], bounds: Callable[[int], tuple[int, int]], first: int, folder: Path,
                 suffix: str, open_writer: Callable[[Path], video.VideoWriter], done: Callable[[Segment], None]):
        self.times, self.bounds, self.next = times, bounds, first
        self.folder, self.suffix, self.open_writer, self.done = folder, suffix, open_writer, done
        self.writer: video.VideoWriter | None = None
        self.pts: list[int] = []
        self.warnings: list[str] = []

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        i = 0
        while i < len(pts):
            lo, hi = self.bounds(self.next)
            if self.writer is None:
                self.writer = self.open_writer(self.folder / segment_name(self.next, self.suffix))
                self.pts = []
            take = min(hi - lo - len(self.pts), len(pts) - i)
            self.writer.write(frames[i : i + take], pts[i : i + take])
            self.pts += [int(p) for p in pts[i : i + take]]
            i += take
            if len(self.pts) == hi - lo:
                self.close_segment()

    def close_segment(self) -> None:
        lo, hi = self.bounds(self.next)
        if self.pts != self.times[lo:hi]:
            raise VsrError(f"segment {self.next} does not hold frames {lo + 1}-{hi} of the source's index")
        writer, self.writer = self.writer, None
        writer.close()  # temp + rename: the segment file exists only once complete
        self.warnings += [w for w in getattr(writer, "warnings", []) if w not in self.warnings]
        self.done(Segment(writer.path.name, hi - lo, self.pts[0], self.pts[-1]))
        self.next += 1

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class SegmentSink:
    """Receives upscaled frames in order and writes them as segments of ``segment_frames`` frames.

    Args:
        state: the resume state (finished segments are kept as they are, checked against ``index``).
        segment_frames: frames per new segment.
        open_writer: opens a `VideoWriter` (video only) on a segment path.
        join: ``join(segment_paths, output) -> JoinResult`` (`video.join_segments` with the run's settings bound).
        index: the source's index; span: the run's frames in it.
        check: ``check(path)`` of the joined file against the index (`output_check`).
    """

    def __init__(self, state: ResumeState, segment_frames: int, open_writer: Callable[[Path], video.VideoWriter],
                 join: Callable[[list[Path], Path], object], index: video.FrameIndex, span: tuple[int, int],
                 check: Callable[[Path], None]):
        self.state = state
        self.index, self.span = index, span
        self._join, self._check = join, check
        self.reused = state.frames
        self.reused_segments = len(state.segments)
        times = index.times[span[0] : span[1]]
        done, count = self.reused, len(self.state.segments)
        if done > len(times) or (done and state.last_pts != times[done - 1]):
            raise VsrError(f"resume state {state.dir} does not hold the first {done} frames of this run's range; "
                           "delete that folder to start over")
        self.window = (span[0] + done, span[1])

        def bounds(k: int) -> tuple[int, int]:
            lo = done + (k - count) * segment_frames
            return lo, min(lo + segment_frames, len(times))

        self._segments = Segmenter(times, bounds, count, state.dir, state.suffix, open_writer, state.add)
        self.warnings = self._segments.warnings

    @property
    def finished(self) -> bool:
        return self.state.finished

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        self._segments.write(frames, pts)

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        """Joins every segment into ``target`` and checks the result against the input and its index.

        Returns:
            (frames, last pts) of the joined file.
        """
        if self._segments.writer is not None:
            raise VsrError(f"the last segment of {target} was left unfinished; rerun with --resume")
        self.state.finished = True
        self.state.save()
        if self.state.frames != frames_in:
            raise VsrError(f"resume state {self.state.dir} holds {self.state.frames} frames, expected {frames_in}; "
                           "delete that folder and run again")
        joined = self.state.dir / f"joined{target.suffix}"
        result = self._join([self.state.dir / seg.file for seg in self.state.segments], joined)
        self.warnings += [w for w in getattr(result, "warnings", []) if w not in self.warnings]
        if result.frames != frames_in or result.last_pts != last_pts_in:
            joined.unlink(missing_ok=True)
            raise VsrError(f"joined segments hold {result.frames} frames ending at pts {result.last_pts}, expected "
                           f"{frames_in} ending at {last_pts_in}; output discarded")
        try:
            self._check(joined)
        except VsrError:
            joined.unlink(missing_ok=True)
            raise
        if target.exists() and not overwrite:  # it may have appeared since the start
            raise VsrError(f"output file exists: {target} (use --overwrite to replace it)")
        try:
            os.replace(joined, target)
        except OSError as err:
            hint = " (disk full)" if err.errno == errno.ENOSPC else ""
            raise VsrError(f"cannot write {target}: {err.strerror or err}{hint}") from None
        self.state.remove()
        return result.frames, result.last_pts

    def abort(self) -> None:
        """Drops the unfinished segment; finished ones stay for the next --resume (the folder goes if none is)."""
        self._segments.abort()
        if self.state.segments:
            self.state.release()
        else:
            self.state.remove()

    def describe(self) -> str:
        return self.state.describe()


@dataclass
class ResumeParts:
    """What segmenting a run takes: the state's identity, the segment size, a segment writer and the join."""

    identity: dict
    segment_frames: int
    open_writer: Callable[[Path], video.VideoWriter]
    join: Callable[[list[Path], Path], video.JoinResult]


def resume_parts(plan: RunPlan) -> ResumeParts:
    """The identity, segment size, segment writer and join of a segmented run with these settings."""
    cfg, encoding = plan.cfg, plan.encoding
    # Everything that changes the segments' pixels or pts; audio/subtitle choices only matter at the join.
    settings = {
        "width": encoding.width, "height": encoding.height, "time_base": str(encoding.time_base),
        "codec": encoding.codec, "crf": cfg.crf, "preset": cfg.preset, "pix_fmt": encoding.pix_fmt,
        "depth": plan.depth, "precision": plan.upscaler.precision.name, "tile": plan.output.tile,
        "tile_pad": plan.upscaler.tile_pad, "start": cfg.start, "end": cfg.end, "deinterlace": plan.output.deinterlace,
        "encoder_options": dict(sorted(cfg.encoder_options.items())),
    }
    identity = {"input": input_identity(plan.input_path), "model": model_identity(plan.model), "settings": settings}
    fps = encoding.fps
    segment_frames = cfg.segment_frames or (max(1, round(10 * fps)) if fps else 300)

    def open_writer(path: Path) -> video.VideoWriter:
        return video.VideoWriter(path, source=None, overwrite=True, **encoding.as_kwargs())

    def join_into(segments: list[Path], output: Path):
        return video.join_segments(
            segments, output, source=str(plan.input_path), time_base=encoding.time_base, copy_audio=cfg.copy_audio,
            copy_subtitles=cfg.copy_subtitles, start=cfg.start, end=cfg.end, overwrite=True,
            rotation=plan.info.rotation, fps=fps, rebase=plan.rebase, tags=encoding.tags, **plan.info.color_tags,
        )

    return ResumeParts(identity, segment_frames, open_writer, join_into)


def open_sink(plan: RunPlan) -> FrameSink:
    """The sink of a single-process run: resume segments with ``--resume``, else one writer onto the target."""
    cfg, target = plan.cfg, plan.output_path
    if cfg.resume:
        video.check_output_path(target, plan.input_path, cfg.overwrite)  # now, not after hours of work
        parts = resume_parts(plan)
        state = ResumeState(target, parts.identity, video.segment_suffix(target))
        try:
            index = run_index(plan, state.dir)
            span = index.span(cfg.start, cfg.end)
            return SegmentSink(state, parts.segment_frames, parts.open_writer, parts.join, index, span,
                               output_check(plan, index, span, target))
        except BaseException:
            state.release() if state.segments else state.remove()
            raise
    if state_dir(target).is_dir():
        warnings.warn(f"{state_dir(target)} holds an earlier --resume run's work; pass --resume to use it")
    index = run_index(plan)
    span = index.span(cfg.start, cfg.end)
    return TargetSink(video.VideoWriter(
        target, source=str(plan.input_path), overwrite=cfg.overwrite, start=cfg.start, end=cfg.end,
        rotation=plan.info.rotation, copy_audio=cfg.copy_audio, copy_subtitles=cfg.copy_subtitles, rebase=plan.rebase,
        check=output_check(plan, index, span, target), rebase_at=index.times[span[0]] if span[1] > span[0] else None,
        **plan.encoding.as_kwargs(),
    ), index, span)
