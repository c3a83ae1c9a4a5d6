"""vsr.models.fast: the CPU inference graph computes what the plain SRResNet module computes.

Random tiny nets at every scale (with non-trivial BatchNorm statistics) must match to float rounding in fp32; the
shipped weights on real footage (../shared/data/video) must match within one grey level in fp32 and in bf16.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsr import video
from vsr.models import SCALES, build_model, load_model
from vsr.models.fast import FastSRResNet, _subpixel_conv, fast_graph, supports
from vsr.pipeline import Upscaler
from vsr.precision import Precision

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
CPU = torch.device("cpu")


def tiny_srresnet(scale: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("srresnet", scale=scale, num_feat=8, num_block=2)
    g = torch.Generator().manual_seed(3)
    for m in net.modules():  # trained-looking BN statistics and PReLU slopes, so folding and slopes are exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.copy_(torch.rand(m.num_parameters, generator=g) * 0.5 - 0.1)
    return net.eval()


@pytest.mark.parametrize("scale", SCALES)
def test_fast_graph_equals_module_fp32(scale):
    net = tiny_srresnet(scale)
    lq = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(lq)
        out = fast_graph(net)(lq.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape == (2, 3, 11 * scale, 13 * scale)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert net.training is False and net.bn_body.__class__.__name__ == "BatchNorm2d"  # the module is not changed


@pytest.mark.parametrize("factor", [2, 3])
def test_subpixel_conv_equals_conv_after_shuffle(factor):
    """The coarse-grid form of a 9x9 conv on the shuffled grid, borders included."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 5 * factor * factor, 6, 7, generator=g)  # channels in (i, j, c) order
    weight, bias = torch.randn(3, 5, 9, 9, generator=g), torch.randn(3, generator=g)
    # PixelShuffle wants (c, i, j) order.
    cij = coarse.view(1, factor * factor, 5, 6, 7).transpose(1, 2).reshape(1, -1, 6, 7)
    ref = F.conv2d(F.pixel_shuffle(cij, factor), weight, bias, padding=4)
    sub_w, sub_b = _subpixel_conv(weight, bias, factor)
    out = F.pixel_shuffle(  # output channels come in (p, q, o) order
        F.conv2d(coarse, sub_w, sub_b, padding=sub_w.shape[-1] // 2).view(1, factor * factor, 3, 6, 7).transpose(1, 2)
        .reshape(1, -1, 6, 7), factor)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_upscaler_runs_fast_graph_for_srresnet_only():
    assert isinstance(Upscaler(tiny_srresnet(4), CPU, Precision("fp32", "test")).graph, FastSRResNet)
    espcn = build_model("espcn", scale=4, num_feat=4, num_feat2=4).eval()
    assert not supports(espcn, CPU) and Upscaler(espcn, CPU, Precision("fp32", "test")).graph is not None
    assert not supports(tiny_srresnet(4), torch.device("meta"))


def test_fast_graph_tiled_equals_whole():
    frames = torch.randint(0, 256, (1, 40, 44, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    net = tiny_srresnet(2)
    whole = Upscaler(net, CPU, Precision("fp32", "test"))(frames)
    tiled = Upscaler(net, CPU, Precision("fp32", "test"), tile=16, tile_pad=8)(frames)
    assert (whole.int() - tiled.int()).abs().max() <= 1


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    return y.float().clamp(0, 1).mul(255).round()


def real_frames(count: int = 2) -> torch.Tensor:
    clip = SHARED_VIDEO / "chaplin_archival_with_audio.mp4"
    batch = next(iter(video.read_frames(clip, count, start=1.0)))
    return torch.from_numpy(np.ascontiguousarray(batch.frames[:, 40:88, 60:124]))


@pytest.mark.skipif(not SHARED_VIDEO.is_dir(), reason="shared video clips not present")
@pytest.mark.parametrize("scale", [4, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_graph_matches_shipped_weights_on_real_frames(scale, dtype):
    net = load_model("srresnet", scale=scale)
    frames = real_frames()
    lq = frames.permute(0, 3, 1, 2).to(dtype).div(255).contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(net).to(dtype).to(memory_format=torch.channels_last).eval()
    with torch.inference_mode():
        ref, out = plain(lq), fast_graph(net, dtype)(lq)
    levels = (to_uint8(out) - to_uint8(ref)).abs()
    assert levels.max() <= 1, f"srresnet_x{scale} {dtype}: the fast graph differs by {levels.max():.0f} grey levels"


def _remove_reorder(monkeypatch):
    monkeypatch.delattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")


def _remove_pointwise(monkeypatch):
    import types

    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())


def _tiny_rsrresnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("rsrresnet", scale=2, num_feat=8, num_block=1, num_state=4).eval()


@pytest.mark.parametrize("make", [lambda: tiny_srresnet(2), _tiny_rsrresnet], ids=["srresnet", "rsrresnet"])
@pytest.mark.parametrize("remove", [_remove_reorder, _remove_pointwise])
def test_plain_module_runs_when_private_mkldnn_ops_are_missing(monkeypatch, remove, make):
    net = make()
    frames = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 10, 12, 3), dtype=np.uint8))
    with_graph = Upscaler(net, CPU, Precision("fp32", "test"))
    assert isinstance(with_graph.graph, FastSRResNet)
    fast_out = with_graph(frames)
    remove(monkeypatch)
    from vsr.models import fast

    assert fast.missing_ops()
    upscaler = Upscaler(net, CPU, Precision("fp32", "test"))
    assert upscaler.graph is upscaler.model and not isinstance(upscaler.graph, FastSRResNet)
    assert len(upscaler.notes) == 1 and "fast CPU graph unavailable" in upscaler.notes[0]
    assert "\n" not in upscaler.notes[0]
    assert (upscaler(frames).int() - fast_out.int()).abs().max() <= 1  # same function, other summation order


def test_fast_graph_that_fails_on_a_trial_input_is_not_used(monkeypatch):
    """A torch whose private op still exists but takes other arguments: refused at build time, not mid-run."""
    from vsr.models import fast

    def changed(*args, **kwargs):
        raise RuntimeError("mkldnn::_convolution_pointwise() expected 14 arguments\nmore text")

    monkeypatch.setattr(fast._Conv, "__call__", lambda self, x, add=None: changed())
    with pytest.raises(fast.FastGraphUnavailable, match="expected 14 arguments$"):
        fast.fast_graph(tiny_srresnet(2))
    assert Upscaler(tiny_srresnet(2), CPU, Precision("fp32", "test")).notes


# Whether glibc serves a 64 MiB malloc with mmap (its default) or from the heap (after keep_freed_memory), read back
# from mallinfo2: the tuning has no getter, so its effect is what is checked.
_MMAP_PROBE = """
import ctypes, ctypes.util, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def mmapped_big_alloc():
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(64 << 20)
    grew = libc.mallinfo2().hblkhd - before >= 64 << 20
    libc.free(block)
    return grew
"""


def _run_probe(body: str) -> str:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _MMAP_PROBE + body], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="the allocator tuning is glibc's")
def test_library_use_leaves_the_allocator_alone():
    out = _run_probe("""
import numpy as np, torch
import vsr
from vsr.pipeline import Upscaler
from vsr.precision import Precision
assert mmapped_big_alloc()
net = vsr.load_model("srresnet", scale=2)
up = Upscaler(net, torch.device("cpu"), Precision("fp32", "library"))
up(torch.zeros((1, 16, 16, 3), dtype=torch.uint8))
print(mmapped_big_alloc())
from vsr.models.fast import keep_freed_memory
keep_freed_memory()
print(mmapped_big_alloc())
""")
    assert out.split() == ["True", "False"]  # untouched by the library; and the probe does see the tuning


@pytest.mark.skipif(not _glibc(), reason="the allocator tuning is glibc's")
def test_vsr_command_tunes_the_allocator():
    out = _run_probe("""
sys.argv = ["vsr", "models"]
from vsr.cli import main
try:
    main()
except SystemExit:
    pass
print("tuned" if not mmapped_big_alloc() else "untouched")
""")
    assert out.splitlines()[-1] == "tuned"
