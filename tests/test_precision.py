"""Precision selection: what `auto` picks on each kind of machine, with the CPU capability injected."""

import pytest
import torch

from vsr.errors import VsrError
from vsr.precision import bf16_unit_from_flags, choose_precision, cpu_bf16_capability, cpu_flags, resolve_device

CPU = torch.device("cpu")


def test_auto_on_cpu_with_and_without_bf16_units():
    assert choose_precision("auto", CPU, cpu_capability="AMX").name == "bf16"
    assert choose_precision("auto", CPU, cpu_capability="AVX512_BF16").name == "bf16"
    picked = choose_precision("auto", CPU, cpu_capability=None)
    assert picked.name == "fp32" and "no native bf16" in picked.reason


def test_auto_respects_measured_quality_in_weights_meta():
    lossy = {"reduced_precision_max_delta_db": {"bf16": 0.05}}
    picked = choose_precision("auto", CPU, lossy, cpu_capability="AMX")
    assert picked.name == "fp32" and "0.050 dB" in picked.reason
    fine = {"reduced_precision_max_delta_db": {"bf16": 0.01}}
    assert choose_precision("auto", CPU, fine, cpu_capability="AMX").name == "bf16"
    # fp16 was never measured for these weights (a CPU-only check): the GPU default is not taken away.
    assert choose_precision("auto", torch.device("cuda"), lossy, cpu_capability=None).name == "fp16"


def test_explicit_choices():
    assert choose_precision("fp32", CPU, cpu_capability="AMX").name == "fp32"
    assert choose_precision("bf16", CPU, cpu_capability=None).name == "bf16"
    with pytest.raises(VsrError, match="fp16 is not supported on CPU"):
        choose_precision("fp16", CPU)
    with pytest.raises(VsrError, match="unknown precision"):
        choose_precision("fp8", CPU)


def test_auto_on_cuda_is_fp16():
    assert choose_precision("auto", torch.device("cuda"), cpu_capability=None).name == "fp16"


def test_detection_runs_here():
    assert cpu_bf16_capability() in (None, "AMX", "AVX512_BF16")


CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl {extra}\n\n"


@pytest.mark.parametrize("extra, unit", [
    ("", None),  # Skylake-SP / Cascade Lake / Ice Lake: AVX-512 but bf16 only emulated
    ("avx512_vnni", None),
    ("avx512_bf16", "AVX512_BF16"),  # Cooper Lake, Zen 4
    ("avx512_bf16 amx_bf16 amx_tile amx_int8", "AMX"),  # Sapphire Rapids and later
])
def test_bf16_unit_from_cpuinfo_flags(tmp_path, extra, unit):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra) * 2)
    assert bf16_unit_from_flags(cpu_flags(str(cpuinfo))) == unit
    assert cpu_flags(str(tmp_path / "missing")) is None


def test_detection_reads_this_cpus_flags():
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo here")
    assert cpu_bf16_capability() == bf16_unit_from_flags(flags)


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    with pytest.raises(VsrError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VsrError, match="no CUDA"):
            resolve_device("cuda")
