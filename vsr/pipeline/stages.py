"""The plumbing between the pipeline's stages: daemon threads that report their exceptions, bounded queues that
can be abandoned when a run stops, and pinned host buffers for asynchronous copies on CUDA.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

DONE = object()  # end-of-stream marker on the queues


@dataclass
class Batch:
    """One batch on a queue between two stages: consecutive frames in presentation order with their pts.

    The first ``warmup`` frames only bring a recurrent model's state up to date (a window that starts after the
    run's first frame begins that many frames early); the encode stage drops them before the sink. On CUDA, the
    model stage also hands over what the encode stage waits for: ``ready`` (event: the copy into the pinned
    ``buffer`` has landed), ``finite`` (a pinned flag, False when the output must be redone in fp32) and ``held``
    (the input frames on the device, for that redo).
    """

    frames: np.ndarray
    pts: list[int]
    warmup: int = 0
    ready: torch.cuda.Event | None = None
    buffer: torch.Tensor | None = None
    finite: torch.Tensor | None = None
    held: torch.Tensor | None = None


def start_thread(target, stop: threading.Event) -> tuple[threading.Thread, list[BaseException]]:
    """Runs ``target`` in a daemon thread; an exception is kept for the main thread and stops the whole run."""
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
            stop.set()  # wakes every stage waiting on a queue, so nothing waits for a thread that is gone

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Puts unless the run is being stopped; returns False when it was."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return DONE


def yield_cpu_to_model() -> None:
    """Lowers the calling thread's CPU priority to the lowest (nice 19); threads it starts afterwards inherit it.

    How a CPU run shares its cores: torch's intra-op threads take all of them at normal priority; the decode and
    encode threads, and the FFmpeg/x264 worker threads they start (the codecs open on first use, in those
    threads), run at nice 19. torch's threads meet at a barrier after every op, so a codec thread that takes a
    core from one of them for a scheduler slice stalls the whole op: measured on a 2-vCPU Xeon (SRResNet x4, bf16,
    160x120), an equal-priority x264 made the model's batches 1.5-2x slower. At nice 19 the codecs run on the
    cores the model leaves idle, and on all of them while the bounded queue between the stages is full and the
    model waits. Linux sets nice per thread; elsewhere this is a no-op.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    except (AttributeError, OSError):
        pass


class HostBuffers:
    """A ring of pinned host buffers for one frame shape, so H2D/D2H copies can be asynchronous on CUDA."""

    def __init__(self, count: int, shape: tuple[int, ...], dtype: torch.dtype, pinned: bool):
        self.free: queue.Queue = queue.Queue()
        for _ in range(count):
            self.free.put(torch.empty(shape, dtype=dtype, pin_memory=pinned))

    def take(self) -> torch.Tensor:
        return self.free.get()

    def give(self, buf: torch.Tensor) -> None:
        self.free.put(buf)
