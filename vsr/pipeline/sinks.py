"""Where the upscaled frames of `enhance` go: the :class:`FrameSink` interface and its implementations.

- :class:`TargetSink`: one `VideoWriter` onto the target (temp file + rename), the plain plan.
- :class:`SegmentSink`: ``--resume`` segments in the state folder (`vsr.pipeline.resume`), joined onto the target.
- `vsr.pipeline.distributed.WindowSink`: one rank's window of segments in a torchrun job.

A sink receives frames in order with their pts, and at the end checks the frames and last pts it wrote against
what was decoded before anything reaches the target path.
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
from vsr.errors import VsrError
from vsr.pipeline.plan import RunPlan
from vsr.pipeline.resume import ResumeState, Segment, input_identity, model_identity, state_dir


@runtime_checkable
class FrameSink(Protocol):
    """What `enhance_video` writes to. The read-only facts tell the decoder where to start and stop."""

    @property
    def reused(self) -> int:
        """Frames an earlier run finished (counted as decoded and written, never decoded again)."""

    @property
    def reused_segments(self) -> int:
        """Segments holding the ``reused`` frames (for the note)."""

    @property
    def done_last_pts(self) -> int | None:
        """pts of the last frame already done: the decoder drops frames up to it. None: start at the start."""

    @property
    def frame_limit(self) -> int | None:
        """The decoder stops after this many frames. None: at the end of the range."""

    @property
    def finished(self) -> bool:
        """Every frame is already done: nothing is decoded, only `finish` is left."""

    @property
    def warnings(self) -> list[str]:
        """Lines about what the writers left out or converted (for the result's notes)."""

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        """Encodes (N, H, W, 3) frames with their pts, in order."""

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        """Closes the output, checks it holds ``frames_in`` frames ending at ``last_pts_in`` and lets it onto
        ``target``. Returns (frames, last pts) written; raises VsrError (and writes nothing) when they differ."""

    def abort(self) -> None:
        """Drops unfinished output after a failure; what is kept is for `describe` to say."""

    def describe(self) -> str:
        """What an interrupted run leaves behind, for the one-line message."""


class TargetSink:
    """Writes every frame with one `VideoWriter` onto the target (temp + rename); checks in == out before the rename."""

    def __init__(self, writer: video.VideoWriter):
        self.writer = writer
        self.warnings = writer.warnings
        self.reused = self.reused_segments = 0
        self.done_last_pts: int | None = None
        self.frame_limit: int | None = None
        self.finished = False

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        self.writer.write(frames, pts)

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        frames_out, last_pts_out = self.writer.frames_written, self.writer.last_pts
        if frames_out != frames_in or last_pts_out != last_pts_in:
            raise VsrError(f"decoded {frames_in} frames ending at pts {last_pts_in} but wrote {frames_out} ending at "
                           f"{last_pts_out}; output discarded")
        self.writer.close()
        return frames_out, last_pts_out

    def abort(self) -> None:
        self.writer.abort()

    def describe(self) -> str:
        return "no output was written"


class SegmentSink:
    """Receives upscaled frames in order and writes them as segments of ``segment_frames`` frames.

    Args:
        state: the resume state (finished segments are kept as they are).
        segment_frames: frames per segment.
        open_writer: opens a `VideoWriter` (video only) on a segment path.
        join: ``join(segment_paths, output) -> JoinResult`` (`video.join_segments` with the run's settings bound).
    """

    def __init__(self, state: ResumeState, segment_frames: int, open_writer: Callable[[Path], video.VideoWriter],
                 join: Callable[[list[Path], Path], object]):
        self.state = state
        self.segment_frames = segment_frames
        self._open_writer = open_writer
        self._join = join
        self._writer: video.VideoWriter | None = None
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self.reused = state.frames
        self.reused_segments = len(state.segments)
        self.frame_limit = None
        self.warnings: list[str] = []

    @property
    def done_last_pts(self) -> int | None:
        """pts of the last frame already in a finished segment (the decoder drops frames up to it)."""
        return self.state.last_pts

    @property
    def finished(self) -> bool:
        return self.state.finished

    def write(self, frames: np.ndarray, pts: list[int]) -> None:
        i = 0
        while i < len(pts):
            if self._writer is None:
                self._writer = self._open_writer(self.state.segment_path(len(self.state.segments)))
                self._first_pts = int(pts[i])
            take = min(self.segment_frames - self._writer.frames_written, len(pts) - i)
            self._writer.write(frames[i : i + take], pts[i : i + take])
            i += take
            if self._writer.frames_written >= self.segment_frames:
                self._close_segment(int(pts[i - 1]))
        if len(pts):
            self._last_pts = int(pts[-1])

    def _close_segment(self, last_pts: int) -> None:
        writer, self._writer = self._writer, None
        writer.close()  # temp + rename: the segment file exists only once complete
        self.warnings += [w for w in getattr(writer, "warnings", []) if w not in self.warnings]
        self.state.add(Segment(writer.path.name, writer.frames_written, self._first_pts, last_pts))

    def finish(self, frames_in: int, last_pts_in: int | None, target: Path, overwrite: bool) -> tuple[int, int | None]:
        """Closes the last segment, joins all of them into ``target`` and checks the result against the input.

        Returns:
            (frames, last pts) of the joined file.
        """
        if self._writer is not None:
            self._close_segment(self._last_pts)
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
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
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
        "tile_pad": cfg.tile_pad, "start": cfg.start, "end": cfg.end, "deinterlace": plan.output.deinterlace,
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
        return SegmentSink(state, parts.segment_frames, parts.open_writer, parts.join)
    if state_dir(target).is_dir():
        warnings.warn(f"{state_dir(target)} holds an earlier --resume run's work; pass --resume to use it")
    return TargetSink(video.VideoWriter(
        target, source=str(plan.input_path), overwrite=cfg.overwrite, start=cfg.start, end=cfg.end,
        rotation=plan.info.rotation, copy_audio=cfg.copy_audio, copy_subtitles=cfg.copy_subtitles, rebase=plan.rebase,
        **plan.encoding.as_kwargs(),
    ))
