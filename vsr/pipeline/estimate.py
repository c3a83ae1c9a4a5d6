"""How long a run will take and how large its output will be, before the work.

- :class:`RunClock`: during a run, the expected total time from the frames done so far (the rate past the
  encoder's lookahead and over the later half of them: the first batches also pay for start-up).
- :func:`estimate_video` / :func:`estimate_image` / :func:`estimate_files`: ``vsr enhance --estimate``: a few
  seconds of the input go through the normal pipeline into a temporary folder, and the time per frame and the
  bytes per second measured there are scaled to the whole input. Nothing is written beside the input.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vsr import video
from vsr.errors import VsrError
from vsr.pipeline.enhance import enhance_video
from vsr.pipeline.image import upscale_image
from vsr.pipeline.plan import EnhanceConfig, default_output_path
from vsr.pipeline.worksize import frames_per_call
from vsr.precision import resolve_device

SAMPLE_SECONDS = 3.0  # of video measured by --estimate
MIN_WINDOW = 24  # frames the printed rate of a run is measured over, at the least


class RunClock:
    """Predicts a run's total duration from its progress.

    Frames count as done when the encoder takes them, and an encoder holds its first frames in its lookahead
    (x264's medium preset: 40, plus a few for its threads) before it does any work: a run limited by its encoder
    seems to go at the model's pace until then. The rate is therefore measured past the first ``settle`` frames
    where the run has them, and over the later half of what is done (the first batches also pay for start-up).

    Args:
        total_frames: frames the run will write (None: unknown, then only the rate is known).
        clock: seconds, monotonic (tests pass their own).
        settle: frames the rate is measured after, once there are enough.
    """

    def __init__(self, total_frames: int | None, clock: Callable[[], float] = time.perf_counter, settle: int = 48):
        self.total = total_frames
        self.clock = clock
        self.settle = settle
        self.started = clock()
        self.done = 0
        self.points: list[tuple[float, int]] = []  # (elapsed, frames done) at each update

    def update(self, frames: int) -> None:
        """Records ``frames`` more frames written now."""
        self.done += frames
        self.points.append((self.clock() - self.started, self.done))

    @property
    def settled(self) -> bool:
        """Whether the rate is measured past the encoder's lookahead (or over the whole run, when it is short)."""
        return any(p[1] >= self.settle for p in self.points[:-1]) or bool(self.total and self.done >= self.total)

    @property
    def ready(self) -> bool:
        """Whether the rate is worth printing: measured past the lookahead over at least ``MIN_WINDOW`` frames (a
        batch or two says little on a machine shared with other work), or the run is done."""
        if self.total and self.done >= self.total:
            return len(self.points) >= 2
        return self.settled and self.done - max(self.done / 2, self.settle) >= MIN_WINDOW

    @property
    def per_frame(self) -> float | None:
        """Seconds per frame (see the class); None until a second batch is done."""
        if len(self.points) < 2:
            return None
        last = self.points[-1]
        since = max(last[1] / 2, self.settle if self.settled else 0)
        ref = next((p for p in self.points[:-1] if p[1] >= since), self.points[-2])
        return (last[0] - ref[0]) / (last[1] - ref[1]) if last[1] > ref[1] else None

    def expected_total(self) -> float | None:
        """The whole run's expected duration in seconds (elapsed + frames left at the steady rate); None until
        the rate is known, or when the frame count is."""
        rate = self.per_frame
        if rate is None or not self.total:
            return None
        return self.points[-1][0] + max(0, self.total - self.done) * rate


def format_duration(seconds: float) -> str:
    """3725.0 -> '1 h 02 min', 125.0 -> '2 min 05 s', 7.25 -> '7.2 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def format_size(size: float) -> str:
    """Bytes as '812 kB', '1.4 GB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"


def range_frames(info: video.VideoInfo, start: float | None, end: float | None) -> tuple[int | None, float | None]:
    """Frames and seconds in ``[start, end)`` of a probed video (None where the file does not say)."""
    duration = info.duration if info.duration is not None else (info.frames / float(info.fps)
                                                                 if info.frames and info.fps else None)
    if duration is None:
        return None, None
    last = min(end, duration) if end is not None else duration
    seconds = max(0.0, last - (start or 0.0))
    if info.fps:
        frames = round(seconds * float(info.fps))
        return (min(frames, info.frames) if info.frames else frames), seconds
    return info.frames, seconds


@dataclass
class Estimate:
    """What a whole file (or folder) should take, from a measured sample."""

    path: Path
    frames: int  # frames (or images) the whole run writes
    seconds: float  # expected run time
    bytes: float  # expected output size
    per_frame: float  # seconds per frame measured
    sample_frames: int  # frames the sample measured
    image: bool = False  # an image file (one picture, measured whole)

    def line(self) -> str:
        if self.image:
            return (f"{self.path.name}: about {format_duration(self.seconds)} (measured), output "
                    f"{format_size(self.bytes)}")
        return (f"{self.path.name}: about {format_duration(self.seconds)} for {self.frames} frames "
                f"({self.per_frame:.3g} s/frame measured on {self.sample_frames}), output about "
                f"{format_size(self.bytes)}")


def estimate_video(path: Path, output: Path | None, model: nn.Module, cfg: EnhanceConfig,
                   sample_seconds: float = SAMPLE_SECONDS) -> Estimate:
    """Runs a sample from the middle of the range the run covers and scales it to the whole range.

    The sample is ``sample_seconds`` long; when that went quickly (a fast model, so the encoder and its share of the
    CPU set the pace), a longer one of :data:`LONG_SAMPLE_FRAMES` frames is run instead: a short sample ends
    before the pipeline's queues and the encoder's lookahead fill, and it would never see the model and the encoder
    competing for the cores as they do for the rest of a run. Samples are written in the output's container to a
    temporary folder, deleted afterwards: the size per second (audio included) gives the output size, the time per
    frame (see :class:`Timing`) the run time.
    """
    info = video.probe(path)
    frames, seconds = range_frames(info, cfg.start, cfg.end)
    if not frames or not seconds:
        raise VsrError(f"{path}: cannot estimate, its duration is unknown")
    fps = float(info.fps or 25)
    # At least two batches (of the size the run will choose, unless told).
    batch = cfg.batch_size or frames_per_call(info.width, info.height, resolve_device(cfg.device))
    timing, size = _sample(path, output, model, cfg, seconds, max(sample_seconds, (2 * batch + 1) / fps))
    total = timing.total(frames)
    if timing.took < QUICK_SAMPLE and timing.frames < min(frames, LONG_SAMPLE_FRAMES):
        first = timing
        timing, size = _sample(path, output, model, cfg, seconds, LONG_SAMPLE_FRAMES / fps)
        # The second sample runs warm (kernels chosen, caches filled): the first one's excess over its rate is what
        # a fresh run pays once more.
        warm_up = max(0.0, first.took - first.planned - first.frames * timing.per_frame)
        total = timing.total(frames) + warm_up
    sampled = timing.frames / fps
    return Estimate(path, frames, total, size * seconds / max(sampled, 1e-6), timing.per_frame, timing.frames)


@dataclass
class Timing:
    """How long a finished run took: ``planned`` seconds to probe and plan, ``took`` in all, for ``frames``.

    Everything after the plan (the stages, the encoder's final flush, the end-of-run check) is a frame's cost,
    whether the model or the encoder sets the pace: a frame counts as done only once it is in the finished file.
    (The progress of a short run says less: it ends before the encoder's lookahead fills, and on a busy CPU the
    niced encoder may write its first batch late.)
    """

    took: float
    planned: float
    frames: int

    @property
    def per_frame(self) -> float:
        return (self.took - self.planned) / max(1, self.frames)

    def total(self, frames: int) -> float:
        """The expected time of a run of ``frames`` frames on the same input and settings."""
        return self.planned + frames * self.per_frame


def timed_enhance(path: Path, target: Path, model: nn.Module, cfg: EnhanceConfig,
                  sink_factory: Callable | None = None):
    """`enhance_video` with its :class:`Timing`: returns ``(result, timing)``."""
    started = time.perf_counter()
    planned: list[float] = []
    result = enhance_video(path, target, model, cfg, on_start=lambda *_: planned.append(time.perf_counter() - started),
                           sink_factory=sink_factory)
    return result, Timing(time.perf_counter() - started, planned[0] if planned else 0.0, result.frames_out)


QUICK_SAMPLE = 20.0  # seconds: a first sample this quick is followed by a longer one
LONG_SAMPLE_FRAMES = 150  # past the queues (2 x 4 batches) and x264's lookahead (40 and its threads' frames)


def _sample(path: Path, output: Path | None, model: nn.Module, cfg: EnhanceConfig, seconds: float,
            length: float) -> tuple[Timing, int]:
    """``length`` seconds from the middle of the run's range (``seconds`` long): its timing and size in bytes."""
    first = (cfg.start or 0.0) + max(0.0, (seconds - length) / 2)
    suffix = (output or default_output_path(path, 1)).suffix
    with tempfile.TemporaryDirectory(prefix="vsr-estimate-") as tmp:
        target = Path(tmp) / f"sample{suffix}"
        sample = dataclasses.replace(cfg, start=first, end=first + min(length, seconds), resume=False,
                                     overwrite=True)
        _, timing = timed_enhance(path, target, model, sample)
        return timing, target.stat().st_size


def estimate_image(path: Path, model: nn.Module, cfg: EnhanceConfig) -> Estimate:
    """Upscales the image into a temporary folder: its time and size are the estimate."""
    with tempfile.TemporaryDirectory(prefix="vsr-estimate-") as tmp:
        target = Path(tmp) / default_output_path(path, cfg.outscale or model.scale).name
        started = time.perf_counter()
        upscale_image(path, target, model, dataclasses.replace(cfg, overwrite=True))
        took = time.perf_counter() - started
        return Estimate(path, 1, took, target.stat().st_size, took, 1, image=True)


def estimate_files(paths: list[Path], model: nn.Module, cfg: EnhanceConfig,
                   report: Callable[[Estimate], None] | None = None) -> Estimate:
    """The estimate of a folder: each video sampled; images measured once per size and format, then counted.

    Args:
        paths: the files a folder run would enhance.
        model: the loaded model.
        cfg: the run's options.
        report: called with each file's (or image group's) estimate as it is made.

    Returns:
        The sum over ``paths`` (``path`` is the first file's folder).
    """
    total = Estimate(paths[0].parent if paths else Path("."), 0, 0.0, 0.0, 0.0, 0)
    measured: dict[tuple, Estimate] = {}
    for path in paths:
        if path.suffix.lower() in video.IMAGE_EXTS:
            from PIL import Image

            with Image.open(path) as im:
                key = (im.size, im.mode, path.suffix.lower())
            if key not in measured:
                measured[key] = estimate_image(path, model, cfg)
            one = dataclasses.replace(measured[key], path=path)
        else:
            one = estimate_video(path, None, model, cfg)
        if report:
            report(one)
        total.frames += one.frames
        total.seconds += one.seconds
        total.bytes += one.bytes
        total.sample_frames += one.sample_frames
    total.per_frame = total.seconds / max(1, total.frames)
    return total
