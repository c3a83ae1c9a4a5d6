"""enhance_video: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

A run goes through its stages in order: plan (`vsr.pipeline.plan`: probe, sizes, precision, memory fit, encoder
settings) -> sink (`vsr.pipeline.sinks`: the target, or resume segments, with the input's frame index) -> read the
window of the index the sink still needs (from a few frames earlier where a recurrent model needs to warm up) ->
run the three stages until the window ends -> finish (the sink checks the output, read back, against the index's
frames before it is let onto the target path). Every batch carries its pts through unchanged.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr import video
from vsr.errors import VsrError
from vsr.pipeline.plan import EnhanceConfig, OutputPlan, RunPlan, check_config, plan_run
from vsr.pipeline.sinks import FrameSink, open_sink
from vsr.pipeline.stages import DONE, Batch, HostBuffers, get, put, start_thread, yield_cpu_to_model
from vsr.precision import Precision

_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}


@dataclass
class EnhanceResult:
    """What a run did, for the CLI to report. A returned result has passed the in == out check."""

    output: str
    frames_in: int
    frames_out: int
    seconds: float
    device: str
    precision: str
    precision_reason: str
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    last_pts_in: int | None = None
    last_pts_out: int | None = None
    time_base: Fraction | None = None
    bit_depth: int = 8  # of the frames that went through the model (16 for 10-bit input)
    reused_frames: int = 0  # frames taken from the segments of an earlier --resume run

    @property
    def fps(self) -> float:
        done = self.frames_out - self.reused_frames
        return done / self.seconds if self.seconds > 0 else 0.0

    @property
    def verified(self) -> bool:
        return self.frames_in == self.frames_out and self.last_pts_in == self.last_pts_out

    @property
    def last_time(self) -> float | None:
        """The last frame's pts in seconds."""
        if self.last_pts_out is None or self.time_base is None:
            return None
        return float(self.last_pts_out * self.time_base)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM via the CLI) stopped a run; ``detail`` says what was kept, for the one-line message."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def enhance_video(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None,
    model: nn.Module,
    cfg: EnhanceConfig | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[video.VideoInfo, Precision, torch.device, OutputPlan], None] | None = None,
    sink_factory: Callable[[RunPlan], FrameSink] | None = None,
) -> EnhanceResult:
    """Upscales every frame of a video and writes it with the original pts and the source's other streams.

    Args:
        input_path: the video to read.
        output_path: where to write (default `<stem>_x<scale><ext>` beside the input). Only ever appears complete:
            written to a temporary file (or, with ``cfg.resume``, to segments) and renamed at the end.
        model: a loaded vsr model (see `vsr.load_model`).
        cfg: options.
        progress: called with the number of frames just written (once at the start with the frames an earlier
            ``--resume`` run finished).
        on_start: called once with the probe, the chosen precision and device, and the :class:`OutputPlan`
            (the CLI prints them).
        sink_factory: makes the sink frames go to from the run's plan, instead of the target or the resume segments
            (`vsr.pipeline.distributed` writes a window of segments). A sink's ``window`` of its ``index`` is
            what the decoder gives it.

    Returns:
        What was done. Raises VsrError on any failure and `Interrupted` on Ctrl-C, leaving nothing at the target.
    """
    cfg = cfg or EnhanceConfig()
    check_config(cfg)
    plan = plan_run(Path(input_path), output_path, model, cfg)
    sink = sink_factory(plan) if sink_factory is not None else open_sink(plan)
    started = time.perf_counter()
    stages = _Stages(plan, sink, progress)
    try:
        if on_start:
            on_start(plan.info, plan.precision, plan.device, plan.output)
        if progress and sink.reused:
            progress(sink.reused)
        stages.run()
        frames_in = sink.reused + stages.frames_in
        last_pts_in = stages.last_pts_in
        if last_pts_in is None and sink.window[0] > sink.span[0]:  # every frame was done by an earlier run
            last_pts_in = sink.index.times[sink.window[0] - 1]
        if frames_in == 0:
            raise VsrError(f"no frames decoded from {plan.input_path} in the chosen range")
        frames_out, last_pts_out = sink.finish(frames_in, last_pts_in, plan.output_path, cfg.overwrite)
    except BaseException as exc:
        # Threads first: the encode thread may be inside the writer, which must not be closed under it.
        if stages.stop_threads():
            sink.abort()
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            raise Interrupted(sink.describe()) from None
        raise
    finally:
        stages.stop.set()
    notes = plan.notes + [w for w in sink.warnings if w not in plan.notes]
    if sink.reused:
        notes.append(f"resumed: {sink.reused} frames ({sink.reused_segments} segments) reused from an earlier run")
    return EnhanceResult(
        output=str(plan.output_path),
        frames_in=frames_in,
        frames_out=frames_out,
        seconds=time.perf_counter() - started,
        device=str(plan.device),
        precision=plan.upscaler.precision.name,
        precision_reason=plan.precision.reason,
        width=plan.output.width,
        height=plan.output.height,
        notes=notes + plan.upscaler.notes,
        last_pts_in=last_pts_in,
        last_pts_out=last_pts_out,
        time_base=plan.output.time_base,
        bit_depth=plan.depth,
        reused_frames=sink.reused,
    )


def read_window(plan: RunPlan, sink: FrameSink, alloc: Callable | None = None) -> Iterator[Batch]:
    """The frames of ``sink``'s window, in batches: a window of the input's frame index, decoded exactly.

    A window that starts after the video's first frame begins up to ``model.warmup_frames`` frames earlier, marked
    as warm-up frames: they go through the model and are dropped, so that a recurrent model's state is about what
    it is at that frame of a run over the whole video (for a --resume segment, a torchrun rank's share and an
    excerpt alike). Closing the generator closes the input.
    """
    cfg, index = plan.cfg, sink.index
    first, stop = sink.window
    warmup = max(0, min(int(getattr(plan.model, "warmup_frames", 0) or 0), first))
    batches = video.read_frames(plan.input_path, plan.output.batch_size, depth=plan.depth, deinterlace=cfg.deinterlace,
                                info=plan.info, alloc=alloc, index=index, window=(first - warmup, stop))
    try:
        for batch in batches:
            warm = min(warmup, len(batch.pts))
            warmup -= warm
            yield Batch(batch.frames, batch.pts, warm)
    finally:
        batches.close()  # closes the input now, also when stopped early


class _Stages:
    """The three stages of one run and the bounded queues between them: decode (a thread), the model (the calling
    thread) and encode (a thread). On CUDA, batches cross to the device through pinned host memory on a side stream
    and come back into a ring of pinned buffers, with no host sync per batch."""

    def __init__(self, plan: RunPlan, sink: FrameSink, progress: Callable[[int], None] | None):
        self.plan, self.sink, self.progress = plan, sink, progress
        self.upscaler, self.device, self.cuda = plan.upscaler, plan.device, plan.cuda
        self.decoded: queue.Queue = queue.Queue(maxsize=plan.queued)
        self.upscaled: queue.Queue = queue.Queue(maxsize=plan.queued)
        self.stop = threading.Event()
        self.frames_in, self.last_pts_in = 0, None
        self.decoder = self.encoder = None
        self.decode_errors: list[BaseException] = []
        self.encode_errors: list[BaseException] = []
        self.model_lock = threading.Lock()  # the encode thread redoes a non-finite batch with the same Upscaler
        self.staged_batches: deque = deque()  # pinned host batches whose H2D copy may still be reading them
        self.copy_stream = self.download_stream = self.out_buffers = None  # CUDA only, made in run()

    def run(self) -> None:
        """Runs every batch through; raises the first error of any stage."""
        if self.cuda:
            plan = self.plan
            self.copy_stream = torch.cuda.Stream(self.device)
            self.download_stream = torch.cuda.Stream(self.device)
            frame_dtype = torch.uint16 if plan.depth == 16 else torch.uint8
            out_shape = (plan.output.batch_size, plan.output.height, plan.output.width, 3)
            self.out_buffers = HostBuffers(plan.queued + 2, out_shape, frame_dtype, pinned=True)
        self.upscaler.reset_state()  # a new window: nothing before it went through the model in this run
        self.decoder, self.decode_errors = start_thread(self.decode, self.stop)
        self.encoder, self.encode_errors = start_thread(self.encode, self.stop)
        while True:
            batch = get(self.decoded, self.stop)
            if self.decode_errors or self.encode_errors or batch is DONE:
                break
            if self.cuda:
                item = self.launch_on_device(batch)
            else:
                item = Batch(self.upscaler(torch.from_numpy(batch.frames)).numpy(), batch.pts, batch.warmup)
            if not put(self.upscaled, item, self.stop):
                break
        if self.decode_errors:
            raise self.decode_errors[0]
        put(self.upscaled, DONE, self.stop)
        self.encoder.join()
        if self.encode_errors:
            raise self.encode_errors[0]

    def stop_threads(self) -> bool:
        """Stops both threads after a failure; True once the encode thread is gone (the sink may then be closed)."""
        self.stop.set()
        for thread, wait in ((self.encoder, 60), (self.decoder, 10)):
            if thread is not None:
                thread.join(timeout=wait)
        return self.encoder is None or not self.encoder.is_alive()

    def decode(self) -> None:
        if not self.cuda:  # the model keeps every core; FFmpeg's decoder threads, started below, inherit this priority
            yield_cpu_to_model()
        if self.sink.finished:  # every frame was done by an earlier run: only the join is left
            put(self.decoded, DONE, self.stop)
            return
        alloc = self.pinned_array if self.cuda else None
        with contextlib.closing(read_window(self.plan, self.sink, alloc)) as batches:
            for batch in batches:
                self.frames_in += len(batch.pts) - batch.warmup
                self.last_pts_in = batch.pts[-1]
                if not put(self.decoded, batch, self.stop):
                    return
        put(self.decoded, DONE, self.stop)

    @staticmethod
    def pinned_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        # CUDA: decoded frames are written once, into pinned memory the H2D copy reads asynchronously.
        return torch.empty(shape, dtype=_TORCH_DTYPES[np.dtype(dtype)], pin_memory=True).numpy()

    def launch_on_device(self, batch: Batch) -> Batch:
        """Copies a batch to the device and starts the model on it; returns the encode queue's item."""
        device = self.device
        frames = torch.from_numpy(batch.frames)
        # Pinned (decoded straight into it) so the H2D copy is asynchronous, on a side stream so it overlaps
        # compute; the host batch is kept until its copy has landed.
        staged = frames if frames.is_pinned() else frames.pin_memory()
        with torch.cuda.stream(self.copy_stream):
            frames = staged.to(device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        self.staged_batches.append((copied, staged))
        while self.staged_batches and self.staged_batches[0][0].query():
            self.staged_batches.popleft()
        torch.cuda.current_stream(device).wait_stream(self.copy_stream)
        frames.record_stream(torch.cuda.current_stream(device))
        with self.model_lock:
            sr, finite = self.upscaler.launch(frames, check_stream=self.download_stream)
        n = sr.shape[0]
        buf = self.out_buffers.take()
        host = buf[:n]
        finite_host = None
        # The D2H copy (and the finiteness check, in launch) on their own stream: they overlap the next batch's
        # model calls instead of waiting in line behind them. Read by the encode thread after `ready`.
        self.download_stream.wait_stream(torch.cuda.current_stream(device))  # the stream of --device cuda:N
        with torch.cuda.stream(self.download_stream):
            host.copy_(sr, non_blocking=True)
            if finite is not None:
                finite_host = torch.empty((), dtype=torch.bool, pin_memory=True)
                finite_host.copy_(finite, non_blocking=True)
            # Blocking sync: the encode thread sleeps in ready.synchronize() instead of spinning a core on it.
            ready = torch.cuda.Event(blocking=True)
            ready.record(self.download_stream)
        sr.record_stream(self.download_stream)  # sr's memory is not reused before the copy has read it
        held = frames if finite is not None else None
        return Batch(host.numpy(), batch.pts, batch.warmup, ready, buf, finite_host, held)

    def redo_in_fp32(self, held: torch.Tensor) -> np.ndarray:
        with self.model_lock, torch.cuda.device(self.device):
            return self.upscaler.redo_in_fp32(held).cpu().numpy()

    def encode(self) -> None:
        if not self.cuda:  # x264's threads start at the first write, in this thread, and inherit its priority
            yield_cpu_to_model()
        while True:
            item = get(self.upscaled, self.stop)
            if item is DONE or self.stop.is_set():
                return
            frames = item.frames
            if item.ready is not None:
                item.ready.synchronize()  # the D2H copy into this pinned buffer (and of the finiteness flag) has landed
            if item.finite is not None and not item.finite.item():
                frames = self.redo_in_fp32(item.held)  # the batch's input frames were kept on the device for this
            pts = item.pts[item.warmup :]  # warm-up frames only fed a recurrent model's state
            if pts:
                self.sink.write(frames[item.warmup :], pts)
            if item.buffer is not None:
                self.out_buffers.give(item.buffer)
            if self.progress and pts:
                self.progress(len(pts))
