"""Training under torchrun: joining the process group, BatchNorm synchronised across ranks, DDP wrapping, and the
few collectives the loop needs (agreeing to stop, mean losses, gathering per-rank state, checking that every rank
holds the same weights).

A plain `vsr train` is world size 1: the same calls then do nothing, so the loop has one code path.

BatchNorm: SRResNet and the SRGAN discriminator normalise with batch statistics while training. Under DDP each rank
would otherwise normalise with its own few crops and keep its own running statistics (DDP's default then copies
rank 0's over the others at every forward), so the statistics a checkpoint holds would come from one rank's data.
Here every rank normalises with the statistics of the global batch and updates identical running statistics:
torch.nn.SyncBatchNorm on CUDA (fused kernels, NCCL), :class:`SyncBatchNorm2d` elsewhere (torch's refuses CPU
tensors). Both keep BatchNorm2d's parameter and buffer names, so checkpoints and exported weights are the same
files at any world size, and the models' BatchNorm folding at inference is unaffected.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as funcol

from vsr.precision import resolve_device


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: its rank, the world size and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def master(self) -> bool:
        """Rank 0: the only one that validates and writes (logs, samples, curves, checkpoints, exports)."""
        return self.rank == 0


def init_distributed(device_name: str) -> Ranks:
    """Joins torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU); otherwise a world of one.

    Under torchrun each process takes its LOCAL_RANK GPU when `device_name` asks for CUDA (auto, cuda, cuda:N),
    else the CPU. The rendezvous (single node or `--nnodes M --rdzv-endpoint HOST:PORT`) is torchrun's.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(device=resolve_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available() or device_name.startswith("cuda:")
    if cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(rank, world, device)


def close(ranks: Ranks) -> None:
    """Leaves the process group (world size > 1)."""
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Waits until every rank gets here: the others wait while rank 0 writes a checkpoint or the final weights."""
    if ranks.world > 1:
        dist.barrier()


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the batch across all ranks, on any device.

    One all-reduce per call carries each channel's sum, sum of squares and the element count. It is torch's
    functional collective (what torch 2.14 names as the successor of `torch.distributed.nn.functional.all_reduce`),
    whose backward all-reduces the gradients: every rank's inputs get the gradient of the global loss through the
    shared mean and variance, as with one process on the whole batch.
    Every rank then updates the same running statistics (unbiased variance, BatchNorm2d's momentum rule). In eval mode,
    or outside a process group of more than one, it is plain BatchNorm2d. Statistics are computed in fp32 whatever
    autocast gives it.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float()
        count = torch.full((1,), x.numel() / x.shape[1], dtype=torch.float32, device=x.device)
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        total = funcol.wait_tensor(funcol.all_reduce(local, "sum", dist.group.WORLD))
        c = self.num_features
        n = total[2 * c]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)  # biased: what normalises the batch
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).to(self.running_var.dtype), momentum)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return (x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).to(input.dtype)


def sync_batchnorm(model: nn.Module, ranks: Ranks) -> nn.Module:
    """`model` with every BatchNorm2d synchronised across ranks (world size > 1), sharing its parameters and buffers.

    The optimizer, the EMA and `state_dict()` see the same tensors under the same names as before, so the
    checkpoint format does not change. CUDA: torch.nn.SyncBatchNorm; other devices: :class:`SyncBatchNorm2d`.
    """
    if ranks.world <= 1:
        return model
    if ranks.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _with_sync_batchnorm(model)


def _with_sync_batchnorm(module: nn.Module) -> nn.Module:
    out = module
    if type(module) is nn.BatchNorm2d:
        out = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _with_sync_batchnorm(child))
    return out


def data_parallel(model: nn.Module, ranks: Ranks) -> nn.Module:
    """DistributedDataParallel around `model` (world size > 1), else `model` itself.

    forward_sync_buffers=False: with synchronised BatchNorm every rank's running statistics are already the same, and
    DDP's default would overwrite them with rank 0's at every forward (buffers are still made equal once, at start).
    """
    if ranks.world <= 1:
        return model
    device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """Whether `flag` is set on any rank (a Ctrl-C seen by one process stops them all at the same step)."""
    if ranks.world <= 1:
        return flag
    value = torch.tensor([float(flag)], device=ranks.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: dict[str, torch.Tensor], ranks: Ranks) -> dict[str, torch.Tensor]:
    """Each value averaged over the ranks (the same keys on every rank): losses logged for the global batch."""
    if ranks.world <= 1 or not values:
        return values
    names = sorted(values)
    stacked = torch.stack([values[k].detach().float().to(ranks.device) for k in names])
    dist.all_reduce(stacked)
    return {k: v / ranks.world for k, v in zip(names, stacked)}


def gather(value, ranks: Ranks) -> list:
    """`value` (any picklable object) from every rank, in rank order, on every rank."""
    if ranks.world <= 1:
        return [value]
    out: list = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of a state dict's names and exact tensor bytes (parameters and buffers, BN statistics included)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
