"""side_by_side.mp4: two models' excerpts in one frame, split at the middle (left half of one, right half of the
other) or wiped (the split line sweeping across and back), each side labelled; H.264 with the source's audio, so any
player plays it."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from vsr import video
from vsr.compare.draw import label_frame
from vsr.compare.run import ModelRun

WIPE_PERIOD = 4.0  # seconds for the line to sweep across and back


def split_position(width: int, seconds: float | None, wipe: bool) -> int:
    """The column where the right-hand model starts: the middle, or for a wipe, where the line is at ``seconds``."""
    if not wipe or seconds is None:
        return width // 2
    phase = (seconds % WIPE_PERIOD) / WIPE_PERIOD
    sweep = 1 - abs(2 * phase - 1)  # 0 -> 1 -> 0
    return round(width * (0.05 + 0.9 * sweep))


def compose(left: np.ndarray, right: np.ndarray, at: int, names: tuple[str, str]) -> np.ndarray:
    """One frame: ``left`` up to column ``at``, ``right`` from there, a white line between, both labelled."""
    frame = np.concatenate([left[:, :at], right[:, at:]], axis=1)
    line = max(1, frame.shape[1] // 640)
    frame[:, max(0, at - line):at + line] = 255
    return label_frame(label_frame(frame, names[0]), names[1], right=True)


def write_side_by_side(path: Path, source: Path, left: ModelRun, right: ModelRun, start: float | None,
                       end: float | None, wipe: bool = False, tags: dict[str, str] | None = None) -> list[str]:
    """Writes the two runs' excerpts as one video at ``path`` (temp file + rename), with the source's audio cut to
    the excerpt.

    Returns:
        The writer's warnings (streams it could not copy, ...).
    """
    info = video.probe(left.output)
    time_base = left.time_base  # the source's clock, on which the writer cuts the audio to the excerpt
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(contextlib.closing(video.read_frames(left.output, 8, deinterlace="off")))
        b = stack.enter_context(contextlib.closing(video.read_frames(right.output, 8, deinterlace="off")))
        writer = stack.enter_context(video.VideoWriter(
            path, width=info.width, height=info.height, time_base=time_base, fps=info.fps, source=source,
            codec="libx264", crf=16, start=start, end=end, rebase=True, overwrite=True, tags=tags,
            sample_aspect_ratio=info.sample_aspect_ratio, **info.color_tags))
        shift = (left.first_pts or 0) * time_base  # the excerpts start at 0; the writer takes the source's clock
        for batch_a, batch_b in zip(a, b):
            n = min(len(batch_a.pts), len(batch_b.pts))
            frames = np.stack([
                compose(batch_a.frames[i], batch_b.frames[i], split_position(
                    info.width, float(Fraction(batch_a.pts[i]) * batch_a.time_base), wipe), (left.label, right.label))
                for i in range(n)])
            pts = [round((p * batch_a.time_base + shift) / time_base) for p in batch_a.pts[:n]]
            writer.write(frames, pts)
        return writer.warnings
