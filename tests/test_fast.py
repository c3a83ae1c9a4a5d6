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


@pytest.mark.parametrize("scale", SCALES)
def test_tail_in_bands_equals_tail_whole(scale):
    """Bands of a few rows (each overlapping by the tail's reach) compute what one pass over the frame does."""
    net = tiny_srresnet(scale)
    lq = torch.rand(2, 3, 23, 13, generator=torch.Generator().manual_seed(2)).contiguous(
        memory_format=torch.channels_last)
    graph = fast_graph(net)
    with torch.inference_mode():
        whole = graph(lq)
        graph.band_bytes = 1  # the smallest band: 2 * reach rows
        banded = graph(lq)
        ref = net(lq)
    assert graph.tail_reach == 3
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(banded, ref, rtol=1e-4, atol=1e-4)
