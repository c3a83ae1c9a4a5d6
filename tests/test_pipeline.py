"""enhance_video end to end on small real clips: frames, pts, audio packets, tiling, recovery."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from torch import nn

from vsr import models
from vsr.errors import VsrError
from vsr.pipeline import EnhanceConfig, Upscaler, enhance_video, upscale_image
from vsr.precision import Precision


def video_pts(path) -> list[int]:
    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def video_size(path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def tiny_srresnet(scale: int = 2) -> nn.Module:
    torch.manual_seed(0)
    net = models.build_model("srresnet", scale=scale, num_feat=8, num_block=1).eval()
    return models.fold_batchnorm(net)


CPU = EnhanceConfig(device="cpu", precision="fp32", batch_size=3)


def test_bicubic_keeps_frames_pts_and_audio(clip_mp4, tmp_path):
    out = tmp_path / "out.mp4"
    result = enhance_video(clip_mp4, out, models.load_model("bicubic", scale=2), CPU)
    assert result.frames_in == result.frames_out == 12
    assert video_pts(out) == video_pts(clip_mp4)
    assert video_size(out) == (128, 96)
    assert audio_packets(out) == audio_packets(clip_mp4) != []


def test_variable_frame_rate_survives(clip_vfr, tmp_path):
    out = tmp_path / "out.mp4"
    enhance_video(clip_vfr, out, tiny_srresnet(2), CPU)
    pts_in = video_pts(clip_vfr)
    assert len(set(np.diff(pts_in))) > 2, "the test clip should really be VFR"
    assert video_pts(out) == pts_in


def test_default_output_name_and_no_partial_files(clip_mp4):
    result = enhance_video(clip_mp4, None, models.load_model("bicubic", scale=2), CPU)
    assert result.output.endswith("clip_x2.mp4")
    assert sorted(p.name for p in clip_mp4.parent.iterdir()) == ["clip.mp4", "clip_x2.mp4"]


def test_refuses_existing_output_and_input_as_output(clip_mp4, tmp_path):
    net = models.load_model("bicubic", scale=2)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(VsrError):
        enhance_video(clip_mp4, existing, net, CPU)
    assert existing.read_bytes() == b"precious"
    before = clip_mp4.read_bytes()
    with pytest.raises(VsrError):
        enhance_video(clip_mp4, clip_mp4, net, EnhanceConfig(device="cpu", overwrite=True))
    assert clip_mp4.read_bytes() == before


@pytest.mark.parametrize("tile", [16, 23])
def test_tiled_equals_untiled(tile):
    net = tiny_srresnet(2)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8))
    whole = Upscaler(net, torch.device("cpu"), Precision("fp32", "test"))(frames)
    # The receptive field of this tiny net is < 16 LR px, so a 16 px overlap hides every seam.
    tiled = Upscaler(net, torch.device("cpu"), Precision("fp32", "test"), tile=tile, tile_pad=16)(frames)
    assert tiled.shape == whole.shape == (2, 80, 112, 3)
    assert (tiled.int() - whole.int()).abs().max() <= 1


class OutOfMemoryAboveBudget(nn.Module):
    """Wraps a model and raises CUDA's out-of-memory error for inputs above a pixel budget, like a small GPU."""

    def __init__(self, inner: nn.Module, max_pixels: int):
        super().__init__()
        self.inner, self.max_pixels, self.scale = inner, max_pixels, inner.scale
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.max_pixels:
            raise torch.OutOfMemoryError("simulated CUDA out of memory")
        return self.inner(x)


def test_out_of_memory_recovers_by_batch_then_tiles_without_losing_frames(clip_mp4, tmp_path):
    net = tiny_srresnet(2)
    normal = tmp_path / "normal.mp4"
    enhance_video(clip_mp4, normal, net, CPU)
    flaky = OutOfMemoryAboveBudget(net, max_pixels=48 * 48)  # less than one 64x48 frame: needs tiles
    out = tmp_path / "recovered.mp4"
    with pytest.warns(UserWarning, match="out of memory"):
        result = enhance_video(clip_mp4, out, flaky, CPU)
    assert result.frames_out == 12
    assert any("tiles" in note for note in result.notes)
    assert video_pts(out) == video_pts(normal)
    with av.open(str(out)) as a, av.open(str(normal)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
            diff = np.abs(fa.to_ndarray(format="rgb24").astype(int) - fb.to_ndarray(format="rgb24").astype(int))
            assert diff.mean() < 1.0  # same frames, up to encoder noise from tile seams (≤ 1 level before encoding)


class NonFiniteInReducedPrecision(nn.Module):
    """Overflows (gives inf) whenever it runs in a reduced precision, as fp16 can on bright content."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x):
        y = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest") * self.weight
        return y * float("inf") if x.dtype != torch.float32 else y


def test_non_finite_output_is_redone_in_fp32(clip_mp4, tmp_path):
    out = tmp_path / "out.mp4"
    cfg = EnhanceConfig(device="cpu", precision="bf16", batch_size=4)
    with pytest.warns(UserWarning, match="non-finite"):
        result = enhance_video(clip_mp4, out, NonFiniteInReducedPrecision(), cfg)
    assert result.precision == "fp32" and result.frames_out == 12
    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert 0 < first.mean() < 255


def test_bf16_close_to_fp32():
    net = tiny_srresnet(2)
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8))
    fp32 = Upscaler(net, torch.device("cpu"), Precision("fp32", "test"))(frames).int()
    bf16 = Upscaler(net, torch.device("cpu"), Precision("bf16", "test"))(frames).int()
    assert (fp32 - bf16).abs().float().mean() < 1.0 and (fp32 - bf16).abs().max() <= 8


def test_upscale_image(tmp_path):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (21, 30, 3), dtype=np.uint8)).save(src)
    out = upscale_image(src, None, models.load_model("bicubic", scale=4), CPU)
    assert out.name == "in_x4.png"
    assert Image.open(out).size == (120, 84)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_cpu(clip_mp4, tmp_path):
    net = tiny_srresnet(2)
    cpu_out, gpu_out = tmp_path / "cpu.mp4", tmp_path / "gpu.mp4"
    enhance_video(clip_mp4, cpu_out, net, CPU)
    enhance_video(clip_mp4, gpu_out, net, EnhanceConfig(device="cuda", precision="fp16"))
    assert video_pts(cpu_out) == video_pts(gpu_out)
    assert audio_packets(cpu_out) == audio_packets(gpu_out)
