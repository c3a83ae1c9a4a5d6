"""The torchrun job an enhance runs in: this process's :class:`Rank`, joining and leaving the process group (gloo),
the share of a list each rank takes, and the barrier at which every rank reports how its share went.

See `vsr.pipeline.distributed` for why control goes through gloo and the work through the shared file system.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vsr.pipeline.plan import EnhanceConfig
from vsr.precision import set_cpu_threads

# A rank with a long share may reach the final barrier hours after the others; a dead rank is torchrun's to notice.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Rank:
    """This process's place in a torchrun job (from the environment torchrun sets)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Rank:
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                   int(env.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True in a torchrun job of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(cfg: EnhanceConfig) -> Rank:
    """Joins the job's process group (gloo) and gives this rank its device: GPU ``LOCAL_RANK`` where there are GPUs
    (and the device is auto or cuda), else CPU with the machine's cores shared among the local ranks."""
    me = Rank.from_env()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    if cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        cfg.device = f"cuda:{me.local_rank % torch.cuda.device_count()}"
    elif cfg.device in ("auto", "cpu"):
        set_cpu_threads(processes=max(1, me.local_world))
    return me


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(items: list, me: Rank) -> list:
    """This rank's share of ``items`` (every world-th, so long and short files mix)."""
    return items[me.rank :: me.world]


def gather_outcomes(outcome: str | None, me: Rank, on_wait: Callable[[], None] | None = None) -> list[str | None]:
    """Waits for every rank (calling ``on_wait`` about twice a second meanwhile) and returns each one's outcome."""
    waiting = dist.barrier(async_op=True)
    while on_wait is not None and not waiting.is_completed():
        on_wait()
        time.sleep(0.5)
    waiting.wait()
    outcomes: list = [None] * me.world
    dist.all_gather_object(outcomes, outcome)
    return outcomes
