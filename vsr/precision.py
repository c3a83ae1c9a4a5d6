"""Which device and number format a model runs in, and why.

One place decides, so `enhance`, `bench`, `eval` and `train` agree: fp16 on CUDA, bf16 on a CPU whose matrix units
run it natively (AMX or AVX-512-BF16), fp32 otherwise or when a model's weights say reduced precision costs it quality.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch

from vsr.errors import VsrError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The most PSNR a reduced precision may cost a model (Set5/Set14) before `auto` keeps fp32 for it.
QUALITY_TOLERANCE_DB = 0.02
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """Turns "auto", "cpu", "cuda" or "cuda:N" into a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VsrError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VsrError(f"device {name} asked for, but this machine has no CUDA GPU (try --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VsrError(f"device {name} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    elif device.type != "cpu":
        raise VsrError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's or taskset's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_cpu_threads(threads: int | None = None, processes: int = 1) -> int:
    """Sets torch's intra-op thread count: ``threads`` when given, else this process's share of the cores when
    ``processes`` run side by side on them (torchrun's local ranks), else torch's own default (every core, or
    OMP_NUM_THREADS). Returns the count in force.

    Why it matters on small machines: torch's threads meet at a barrier after every op, so two jobs that each take
    every core wait on each other's stragglers at every op. Measured on 2 vCPUs (docs/performance.md): a trainer at
    2 threads beside other work fell to 26-99 s/step; at 1 thread it kept 1.6 steps/s (1.8 at 2 threads alone).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    elif processes > 1:
        torch.set_num_threads(max(1, cpu_cores() // processes))
    return torch.get_num_threads()


def bf16_unit_from_flags(flags: set[str] | frozenset[str]) -> str | None:
    """The bf16 matrix unit that CPU feature flags (as in /proc/cpuinfo) name: "AMX", "AVX512_BF16" or None.

    Only the instructions themselves count: ``amx_bf16`` (AMX tiles, Sapphire Rapids and later) or ``avx512_bf16``
    (Cooper Lake, Zen 4 and later). Plain AVX-512 (Skylake-SP, Cascade Lake, Ice Lake) does not: oneDNN runs bf16
    there by emulation, slower than fp32.
    """
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512_BF16"
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The feature flags of the first CPU in ``cpuinfo`` (Linux), or None where that file cannot be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return None
    return frozenset()


@functools.cache
def cpu_bf16_capability() -> str | None:
    """Names the CPU feature that makes bf16 fast here ("AMX" or "AVX512_BF16"), or None.

    Read from the CPU's own flags (/proc/cpuinfo). oneDNN's ``_is_mkldnn_bf16_supported()`` is not enough: it is
    true on any AVX-512 CPU, where bf16 is emulated. Where the flags cannot be read (not Linux), torch's AMX probe
    is the only evidence taken; without it bf16 is never chosen automatically.
    """
    try:
        # Also asks the kernel for the AMX tile state (Linux >= 5.16), which torch's own bf16 kernels need.
        amx_usable = bool(torch._C._cpu._init_amx())
    except (AttributeError, RuntimeError):
        amx_usable = False
    flags = cpu_flags()
    if flags is None:
        return "AMX" if amx_usable else None
    unit = bf16_unit_from_flags(flags)
    if unit == "AMX" and not amx_usable:  # the OS did not grant the tiles: the AVX-512 bf16 units remain
        unit = bf16_unit_from_flags(flags - {"amx_bf16"})
    return unit


@dataclass(frozen=True)
class Precision:
    """The chosen number format: `name` in fp32/bf16/fp16, `dtype`, and a one-line `reason` to print."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]


def choose_precision(
    requested: str, device: torch.device, model_meta: dict | None = None, cpu_capability: str | None | bool = False
) -> Precision:
    """Picks the precision for a run.

    Args:
        requested: "auto", "fp32", "bf16" or "fp16".
        device: where the model runs.
        model_meta: the weights' meta; `reduced_precision_max_delta_db` ({"bf16": 0.004, ...}, written by
            scripts/precision_table.py) makes `auto` keep fp32 where a format was measured to cost > 0.02 dB.
            A format never measured for the model is allowed. `unsupported_precisions` (["fp16"], set for
            other projects' architectures that spandrel says cannot run in it) makes `auto` keep fp32 and refuses
            an explicit request.
        cpu_capability: injectable result of `cpu_bf16_capability()` (False means "detect").
    """
    if requested not in PRECISIONS:
        raise VsrError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if cpu_capability is False:
        cpu_capability = cpu_bf16_capability() if device.type == "cpu" else None
    unsupported = (model_meta or {}).get("unsupported_precisions") or ()
    if requested in unsupported:
        raise VsrError(f"this model's architecture does not run in {requested} (use --precision fp32)")
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise VsrError("fp16 is not supported on CPU (use --precision bf16 or fp32)")
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise VsrError("this GPU has no bf16 support (use --precision fp16 or fp32)")
        return Precision(requested, "asked for")
    measured = (model_meta or {}).get("reduced_precision_max_delta_db") or {}
    if device.type == "cuda":
        candidate, why = "fp16", "fp16 on CUDA (tensor cores)"
    elif cpu_capability:
        candidate, why = "bf16", f"bf16 on CPU with {cpu_capability}"
    else:
        return Precision("fp32", "fp32: this CPU has no native bf16 (AMX / AVX-512-BF16)")
    if candidate in unsupported:
        return Precision("fp32", f"fp32: this model's architecture does not run in {candidate}")
    if measured.get(candidate, 0.0) > QUALITY_TOLERANCE_DB:
        return Precision("fp32", f"fp32: these weights lose {measured[candidate]:.3f} dB in {candidate} (measured)")
    return Precision(candidate, why)


def autocast(device: torch.device, precision: Precision):
    """Autocast context for `precision` on `device` (a no-op for fp32)."""
    if precision.name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.dtype)
