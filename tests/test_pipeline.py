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


def test_launch_defers_the_finiteness_check_and_redo_uses_the_held_frames():
    frames = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (2, 8, 10, 3), dtype=np.uint8))
    upscaler = Upscaler(NonFiniteInReducedPrecision(), torch.device("cpu"), Precision("bf16", "test"))
    out, finite = upscaler.launch(frames)
    assert finite is not None and finite.dtype == torch.bool and finite.dim() == 0 and not finite
    with pytest.warns(UserWarning, match="non-finite"):
        redone = upscaler.redo_in_fp32(frames)
    assert upscaler.precision.name == "fp32" and redone.shape == (2, 16, 20, 3)
    assert upscaler.launch(frames)[1] is None  # fp32 needs no check
    torch.testing.assert_close(redone, upscaler(frames))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_non_finite_batch_is_redone_without_losing_frames(clip_mp4, tmp_path):
    out = tmp_path / "out.mp4"
    device = f"cuda:{torch.cuda.device_count() - 1}"  # the D2H event must be on this device's stream
    with pytest.warns(UserWarning, match="non-finite"):
        result = enhance_video(clip_mp4, out, NonFiniteInReducedPrecision(), EnhanceConfig(device=device,
                                                                                          precision="fp16"))
    assert result.precision == "fp32" and result.frames_out == 12
    assert video_pts(out) == video_pts(clip_mp4)


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


def test_out_of_memory_inside_tiles_shrinks_the_tiles_once():
    # Tiles of 32 (+4 padding) do not fit this budget either: the tiled path itself must recover, with smaller
    # tiles, and keep them for later batches instead of failing (and warning) again on every batch.
    net = models.load_model("bicubic", scale=2)  # cheap per call; its 2-pixel support is inside the padding
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8))
    whole = Upscaler(net, torch.device("cpu"), Precision("fp32", "test"))(frames)
    flaky = OutOfMemoryAboveBudget(net, max_pixels=500)
    upscaler = Upscaler(flaky, torch.device("cpu"), Precision("fp32", "test"), tile=32, tile_pad=4)
    with pytest.warns(UserWarning, match="out of memory") as caught:
        tiled = torch.cat([upscaler(frames[:2]), upscaler(frames[2:])])
    assert (tiled.int() - whole.int()).abs().max() <= 1
    assert upscaler.max_batch == 1 and upscaler.tile == 16
    assert [str(w.message) for w in caught] == ["out of memory: retrying with batch 1",
                                                "out of memory: retrying with tiles of 16 px"]
    assert max(n * h * w for n, _, h, w in upscaler.model.calls[3:]) <= 500  # after recovery, only calls that fit


def test_uint16_frames_keep_their_depth():
    # 10-bit video is decoded to uint16 RGB; the model must see and return every level, not 8-bit steps.
    ramp = np.linspace(30000, 31000, 64).astype(np.uint16)  # ~16 ten-bit levels, ~4 eight-bit ones
    frames = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(ramp[None, None, :, None], (2, 8, 64, 3))))
    out = Upscaler(models.load_model("bicubic", scale=2), torch.device("cpu"), Precision("fp32", "test"))(frames)
    assert out.dtype == torch.uint16 and out.shape == (2, 16, 128, 3)
    assert len(np.unique(out.numpy())) > 100  # one level per output column; uint8 would leave 5
    assert abs(int(out[0, 8, 64, 0]) - int(frames[0, 4, 32, 0])) < 40


def test_ten_bit_video_stays_ten_bit(clip_factory, tmp_path):
    def ramp(index, width, height):
        row = np.linspace(20000, 24000, width).astype(np.uint16)  # a dark ramp: 16 eight-bit levels, 64 ten-bit
        return np.ascontiguousarray(np.broadcast_to(row[None, :, None], (height, width, 3)))

    clip = clip_factory("deep.mp4", frames=3, pix_fmt="yuv420p10le", picture=ramp, audio=False)
    net = models.load_model("bicubic", scale=2)
    levels = {}
    for name, pix_fmt in (("deep", None), ("crushed", "yuv420p")):
        out = tmp_path / f"{name}_out.mp4"
        result = enhance_video(clip, out, net, EnhanceConfig(device="cpu", pix_fmt=pix_fmt))
        with av.open(str(out)) as container:
            frame = next(container.decode(video=0))
            levels[name] = len(np.unique(frame.to_ndarray(format="rgb48le")[20, 8:-8, 1]))
            assert frame.format.name == (pix_fmt or "yuv420p10le")
        assert result.bit_depth == (16 if pix_fmt is None else 8)
    assert levels["deep"] > 2 * levels["crushed"], levels


def test_result_reports_frames_and_last_pts(clip_vfr, tmp_path):
    result = enhance_video(clip_vfr, tmp_path / "out.mp4", models.load_model("bicubic", scale=2), CPU)
    pts = video_pts(clip_vfr)
    assert result.verified and result.frames_in == result.frames_out == len(pts)
    assert result.last_pts_in == result.last_pts_out == max(pts)
    assert result.last_time == pytest.approx(0.85)  # the 12th frame of clip_vfr starts 850 ms in


def test_lost_frame_is_caught_and_output_discarded(clip_mp4, tmp_path, monkeypatch):
    # A writer that silently drops a frame (the Real-ESRGAN failure) must not produce an output that looks fine.
    from vsr import video

    real_write = video.VideoWriter.write

    def lossy_write(self, frames, pts):
        return real_write(self, frames[:-1], pts[:-1]) if len(pts) > 1 else real_write(self, frames, pts)

    monkeypatch.setattr(video.VideoWriter, "write", lossy_write)
    with pytest.raises(VsrError, match=r"decoded 12 frames ending at pts \d+ but wrote 8 "):
        enhance_video(clip_mp4, tmp_path / "out.mp4", models.load_model("bicubic", scale=2), CPU)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_decode_error_mid_run_fails_without_hanging(clip_mp4, tmp_path, monkeypatch):
    from vsr import video

    real_read = video.read_frames

    def failing_read(*args, **kwargs):
        for i, batch in enumerate(real_read(*args, **kwargs)):
            if i == 2:
                raise VsrError("simulated decode failure")
            yield batch

    monkeypatch.setattr(video, "read_frames", failing_read)
    with pytest.raises(VsrError, match="simulated decode failure"):
        enhance_video(clip_mp4, tmp_path / "out.mp4", models.load_model("bicubic", scale=2), CPU)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize(
    "name, options",
    [
        ("full.mkv", dict(audio_codec="libopus", audio_tracks=2, subtitles=("ass",), font=True, chapters=2, tags=True)),
        ("full.mp4", dict(audio_tracks=2, subtitles=("mov_text",), chapters=2, tags=True)),
    ],
)
def test_enhance_keeps_every_stream_of_a_real_file(tmp_path, name, options):
    """The whole pipeline (not only the writer) on a file with several audio tracks, subtitles, font and chapters."""
    from conftest import make_clip, other_streams
    from test_video_streams import describe_file

    source = make_clip(tmp_path / name, **options)
    out = tmp_path / f"up_{name}"
    result = enhance_video(source, out, models.load_model("bicubic", scale=2), CPU)
    assert result.verified and result.frames_out == 12
    assert video_pts(out) == video_pts(source)
    assert other_streams(out) == other_streams(source)
    assert describe_file(out) == describe_file(source)


class EveryBf16Level(nn.Module):
    """Returns every bf16 value in [0, 1] (whatever the input), so the scaling to 0..255 meets all of them."""

    def __init__(self):
        super().__init__()
        self.scale = 1
        self.weight = nn.Parameter(torch.ones(1))
        bits = torch.arange(0x3F80 + 1, dtype=torch.int32).to(torch.int16)  # 0.0 .. 1.0 as bf16 bit patterns
        self.register_buffer("levels", bits.view(torch.bfloat16).float())

    def forward(self, x):
        n, _, h, w = x.shape
        y = self.levels[: n * 3 * h * w].reshape(n, h, w, 3).permute(0, 3, 1, 2)
        return y.to(x.dtype) * self.weight


def test_bf16_output_is_scaled_to_levels_in_fp32():
    """bf16 has 8 significant bits: y * 255 rounded in bf16 and then to an integer lands a level off, from 64 up."""
    model = EveryBf16Level()
    count = model.levels.numel()
    frames = torch.zeros((1, 1, count // 3, 3), dtype=torch.uint8)
    out = Upscaler(model, torch.device("cpu"), Precision("bf16", "test"))(frames).reshape(-1).int()
    levels = model.levels[: out.numel()]
    expected = levels.mul(255).round().int()  # the bf16 values, scaled in fp32
    in_bf16 = levels.to(torch.bfloat16).mul(255).round().int()  # the old way
    assert (in_bf16 != expected).any()  # the test meets the case that was wrong
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_upscaler_leaves_the_callers_model_as_it_was():
    net = models.build_model("srresnet", scale=2, num_feat=8, num_block=1).train()
    before = {k: (v.data_ptr(), v.dtype, v.stride()) for k, v in net.state_dict().items()}
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (1, 12, 16, 3), dtype=np.uint8))
    for precision in ("bf16", "fp32"):
        upscaler = Upscaler(net, torch.device("cpu"), Precision(precision, "test"))
        upscaler(frames)
        assert upscaler.model is not net and upscaler.model.training is False
        assert next(upscaler.model.parameters()).dtype == Precision(precision, "").dtype
    # Not moved, cast, put in channels_last or in eval mode.
    assert net.training and {k: (v.data_ptr(), v.dtype, v.stride()) for k, v in net.state_dict().items()} == before


def test_inference_copy_shares_weights_already_in_place_and_copies_the_rest():
    from vsr.models.runner import inference_copy

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[0].weight.data = net[0].weight.data.contiguous(memory_format=torch.channels_last)
    same = inference_copy(net, torch.device("cpu"), torch.float32)
    assert same[0].weight is not net[0].weight and same[0].weight.data_ptr() == net[0].weight.data_ptr()
    assert same[1].num_batches_tracked.dtype == torch.int64 and same[1].running_mean.data_ptr() == \
        net[1].running_mean.data_ptr()
    half = inference_copy(net, torch.device("cpu"), torch.bfloat16)
    assert half[0].weight.dtype == torch.bfloat16 and net[0].weight.dtype == torch.float32
    assert not half[0].weight.requires_grad and net[0].weight.requires_grad


def test_cuda_math_is_fp32_and_autotuned_inside_and_restored_after():
    """Flags only (no GPU needed): they are read when a kernel is launched, inside the block."""
    from vsr.models.runner import cuda_math

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (torch.backends.cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision)
    with cuda_math(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
        assert conv.fp32_precision == "ieee" and matmul.fp32_precision == "ieee"  # not TF32
    assert (torch.backends.cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision) == before
    assert torch.backends.cudnn.allow_tf32 == (before[1] == "tf32")  # the legacy flags read as before, no error
    with cuda_math(torch.device("cpu")):
        assert (torch.backends.cudnn.benchmark, conv.fp32_precision) == before[:2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_leaves_the_callers_model_and_math_settings_alone(clip_mp4, tmp_path):
    net = tiny_srresnet(2).train()
    settings = lambda: (torch.backends.cudnn.benchmark, torch.backends.cudnn.conv.fp32_precision,  # noqa: E731
                        torch.backends.cuda.matmul.fp32_precision)
    before = settings()
    for precision in ("fp16", "fp32"):
        result = enhance_video(clip_mp4, tmp_path / f"{precision}.mp4", net,
                               EnhanceConfig(device="cuda", precision=precision))
        assert result.frames_out == 12 and result.precision == precision
    assert settings() == before
    assert net.training and {(p.device.type, p.dtype) for p in net.parameters()} == {("cpu", torch.float32)}
