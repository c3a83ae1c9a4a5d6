"""The plumbing between the pipeline's stages: daemon threads that report their exceptions, bounded queues that
can be abandoned when a run stops, and pinned host buffers for asynchronous copies on CUDA.
"""

from __future__ import annotations

import queue
import threading

import torch

DONE = object()  # end-of-stream marker on the queues


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
