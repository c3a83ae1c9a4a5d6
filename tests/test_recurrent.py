"""The streaming recurrent model (rsrresnet): its state through the runner (batches, tiles, resets), its scene-cut
reset, its start from a per-frame SRResNet, sequences for training, and a short sequence training run with resume.
Tiny models and small real frames; nothing is timed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vsr import data, losses, models, train
from vsr.data.sequences import camera_path, find_runs
from vsr.models.ops import count_flops
from vsr.models.runner import Upscaler
from vsr.pipeline import EnhanceConfig, enhance_video
from vsr.precision import Precision
from vsr.train import TrainConfig

from conftest import enhance_until_crash, make_clip

CPU = torch.device("cpu")
FP32 = Precision("fp32", "test")


ARCHS = ["rsrresnet", "arsrresnet"]  # the second warps its past onto the current frame


def tiny(cut_threshold: float = 0.1, seed: int = 0, arch: str = "rsrresnet") -> models.RecurrentSRResNet:
    """A 2-block, 8-channel rsrresnet (or arsrresnet) whose past matters (its temporal conv is not left at zero)."""
    torch.manual_seed(seed)
    model = models.build_model(arch, scale=4, num_feat=8, num_block=2, num_state=4, cut_threshold=cut_threshold)
    torch.nn.init.normal_(model.conv_temporal.weight, std=0.05)
    return model.eval()


def moving_frames(n: int = 7, h: int = 24, w: int = 40, seed: int = 0) -> torch.Tensor:
    """(n, h, w, 3) uint8: one textured scene panning a pixel per frame (consecutive frames, no cut)."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (h, w + n, 3), dtype=np.uint8)
    return torch.from_numpy(np.stack([scene[:, t : t + w] for t in range(n)]))


def upscale_in_batches(model, frames: torch.Tensor, batch: int, tile: int = 0) -> torch.Tensor:
    upscaler = Upscaler(model, CPU, FP32, tile=tile, tile_pad=4)
    return torch.cat([upscaler(frames[i : i + batch]) for i in range(0, len(frames), batch)])


@pytest.mark.parametrize("arch", ARCHS)
def test_the_past_changes_the_output_and_batches_carry_it_as_one_long_pass(arch):
    model, frames = tiny(arch=arch), moving_frames()
    one_pass = upscale_in_batches(model, frames, batch=len(frames))
    for batch in (1, 3):
        assert torch.equal(upscale_in_batches(model, frames, batch), one_pass)
    # Frame 3 upscaled from no past differs from frame 3 of the stream: the state is really used.
    assert not torch.equal(upscale_in_batches(model, frames[3:4], 1)[0], one_pass[3])


@pytest.mark.parametrize("arch", ARCHS)
def test_tiles_carry_their_own_state_across_batches(arch):
    model, frames = tiny(arch=arch), moving_frames(h=40, w=56)
    tiled = upscale_in_batches(model, frames, batch=len(frames), tile=16)
    assert torch.equal(upscale_in_batches(model, frames, batch=2, tile=16), tiled)
    # Each tile sees only its padded window, so tiled and whole frames differ a little; they are the same picture.
    whole = upscale_in_batches(model, frames, batch=len(frames))
    assert (tiled.float() - whole.float()).abs().mean() < 4


def test_reset_state_starts_afresh():
    model, frames = tiny(), moving_frames()
    upscaler = Upscaler(model, CPU, FP32)
    upscaler(frames[:4])
    upscaler.reset_state()
    assert torch.equal(upscaler(frames[4:5]), upscale_in_batches(model, frames[4:5], 1))


@pytest.mark.parametrize("arch", ARCHS)
def test_a_scene_cut_resets_the_state(arch):
    model = tiny(arch=arch)
    a, b = moving_frames(seed=1), moving_frames(seed=2)
    b = (b.float() * 0.2).to(torch.uint8)  # another shot: darker, other content
    stream = upscale_in_batches(model, torch.cat([a, b]), batch=4)
    fresh = upscale_in_batches(model, b, batch=4)
    assert torch.equal(stream[len(a)], fresh[0])  # the first frame after the cut: from itself alone
    no_cut = upscale_in_batches(tiny(cut_threshold=0, arch=arch), torch.cat([a, b]), batch=4)
    assert not torch.equal(no_cut[len(a)], fresh[0])


def test_fp32_and_bf16_runs_agree_and_a_one_frame_video_works(tmp_path):
    model, frames = tiny(), moving_frames()
    fp32 = upscale_in_batches(model, frames, 7)
    bf16 = torch.cat([Upscaler(model, CPU, Precision("bf16", "test"))(frames)])
    assert (fp32.float() - bf16.float()).abs().mean() < 3
    clip = make_clip(tmp_path / "one.mp4", frames=1, audio=False)
    result = enhance_video(clip, tmp_path / "one_x4.mp4", model, EnhanceConfig(device="cpu"))
    assert result.frames_in == result.frames_out == 1 and result.verified


def test_starts_as_the_per_frame_srresnet_it_is_initialised_from():
    torch.manual_seed(0)
    per_frame = models.build_model("srresnet", scale=4, num_feat=8, num_block=2).eval()
    for p in per_frame.parameters():  # non-trivial BN statistics and weights
        p.data.add_(torch.randn_like(p) * 0.01)
    recurrent = models.build_model("rsrresnet", scale=4, num_feat=8, num_block=2, num_state=4).eval()
    own = recurrent.state_dict()
    own.update(per_frame.state_dict())
    recurrent.load_state_dict(own)
    lq = torch.rand(2, 3, 3, 12, 16)
    with torch.no_grad():
        seq = recurrent(lq)
        for t in range(3):
            assert torch.allclose(seq[:, t], per_frame(lq[:, t]), atol=1e-5)


def test_block_motion_finds_a_shift_and_warp_undoes_it():
    from vsr.models.recurrent import block_motion, warp

    torch.manual_seed(0)
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 90, 120), 3, 1, 1)  # texture, not pixel noise
    previous, current = scene[:, :, 10:58, 10:90], scene[:, :, 9:57, 12:92]  # moved 2 px left and 1 px down
    motion = block_motion(current, previous, radius=3)
    assert motion[0, 0].median().item() == pytest.approx(2, abs=0.1)
    assert motion[0, 1].median().item() == pytest.approx(-1, abs=0.1)
    inner = (..., slice(6, -6), slice(6, -6))
    assert (warp(previous, motion) - current)[inner].abs().mean() < 0.05 * (previous - current)[inner].abs().mean()
    # The same motion warps an image 4x larger (the previous output) by 4x as many pixels.
    big_previous = torch.nn.functional.interpolate(previous, scale_factor=4, mode="nearest")
    big_current = torch.nn.functional.interpolate(current, scale_factor=4, mode="nearest")
    big_inner = (..., slice(24, -24), slice(24, -24))
    assert (warp(big_previous, motion) - big_current)[big_inner].abs().mean() < 0.1 * (
        big_previous - big_current)[big_inner].abs().mean()
    # A still scene stays still (flat patches too: small motion is preferred).
    assert block_motion(current, current, radius=3).abs().max() == 0


def test_block_motion_beyond_radius_3_searches_coarse_to_fine():
    from vsr.models.recurrent import block_motion, warp

    torch.manual_seed(0)
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 90, 120), 3, 1, 1)
    previous, current = scene[:, :, 20:68, 20:100], scene[:, :, 15:63, 26:106]  # 6 px left, 5 px down
    near = block_motion(current, previous, radius=3)  # out of reach: stops at the edge of its search
    motion = block_motion(current, previous, radius=7)
    assert near[0, 0].median().item() <= 3
    assert motion[0, 0].median().item() == pytest.approx(6, abs=0.1)
    assert motion[0, 1].median().item() == pytest.approx(-5, abs=0.1)
    inner = (..., slice(10, -10), slice(10, -10))
    assert (warp(previous, motion) - current)[inner].abs().mean() < 0.05 * (previous - current)[inner].abs().mean()
    # Sub-pixel motion is still found around the coarse guess, and a still scene stays exactly still.
    shifted = torch.nn.functional.grid_sample(scene, torch.nn.functional.affine_grid(
        torch.tensor([[[1.0, 0, 4.5 * 2 / 120], [0, 1.0, 0]]]), scene.shape, align_corners=False),
        align_corners=False)  # 4.5 px: shifted[x] = scene[x + 4.5]
    half = block_motion(shifted[:, :, 20:68, 20:100], scene[:, :, 20:68, 20:100], radius=7)
    assert half[0, 0, 10:-10, 10:-10].median().item() == pytest.approx(4.5, abs=0.25)
    assert block_motion(current, current, radius=7).abs().max() == 0


def test_the_aligned_model_starts_as_the_rsrresnet_it_is_initialised_from():
    source = tiny()  # every layer has its name and shape in arsrresnet: --init-from an rsrresnet file copies all
    torch.nn.init.zeros_(source.conv_temporal.weight)
    torch.nn.init.zeros_(source.conv_temporal.bias)
    aligned = models.build_model("arsrresnet", scale=4, num_feat=8, num_block=2, num_state=4).eval()
    aligned.load_state_dict(source.state_dict())
    frames = moving_frames()
    assert torch.equal(upscale_in_batches(aligned, frames, 3), upscale_in_batches(source, frames, 3))


def test_costs_no_more_per_frame_than_srresnet():
    srresnet, recurrent = models.build_model("srresnet", scale=4), models.build_model("rsrresnet", scale=4)
    assert count_flops(recurrent, 60, 80) <= count_flops(srresnet, 60, 80)


def test_batchnorm_keeps_its_statistics_in_training():
    model = tiny().train()
    before = model.body[0].bn1.running_mean.clone()
    model(torch.rand(2, 3, 3, 12, 12)).mean().backward()
    assert torch.equal(model.body[0].bn1.running_mean, before) and model.body[0].bn1.weight.grad is not None


def _write_run(folder: Path, clip: str, frames: int, start: int = 0, size=(80, 64), seed=0) -> None:
    """PNG frames named as `vsr prepare` names them: a scene panning right, 2 px per frame."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    scene = rng.integers(0, 256, (h // 4, (w + 2 * frames) // 4 + 1, 3), dtype=np.uint8)
    scene = np.kron(scene, np.ones((4, 4, 1), dtype=np.uint8))  # blocks, so the crops have structure
    for t in range(frames):
        Image.fromarray(np.ascontiguousarray(scene[:h, 2 * t : 2 * t + w])).save(
            folder / f"{clip}_{start + t:06d}.png")


def test_find_runs_splits_clips_at_gaps_and_keeps_photographs_apart(tmp_path):
    _write_run(tmp_path, "a", 5)
    _write_run(tmp_path, "a", 3, start=10)  # a gap: another run, too short for 4 frames
    _write_run(tmp_path, "b", 4)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photo.png")
    runs, others = find_runs(data.list_images(tmp_path), 4)
    assert sorted(len(r) for r in runs) == [4, 5]
    assert all(p.stem.startswith("b") for p in min(runs, key=len))
    assert sorted(p.name for p in others) == ["a_000010.png", "a_000011.png", "a_000012.png", "photo.png"]


def test_sequences_are_aligned_crops_of_consecutive_frames_degraded_as_video(tmp_path):
    _write_run(tmp_path / "clips", "clip", 8)
    deg = data.Degradation(preset="realistic", interlace_prob=0, second_order_prob=0, video_prob=1.0,
                           mpeg2_prob=0)
    ds = data.SequenceDataset(tmp_path / "clips", 4, 5, hr_crop=32, degradation=deg, seed=3)
    lq, gt = ds[0]
    assert lq.shape == (5, 3, 8, 8) and gt.shape == (5, 3, 32, 32)
    # Consecutive frames of a panning scene: each is its neighbour moved 2 px, along rows or columns (the crop may
    # be flipped or transposed, the same way for every frame), either way (a run may play backwards).
    for a, b in zip(gt[:-1].numpy(), gt[1:].numpy()):
        pairs = [(a[..., 2:], b[..., :-2]), (a[..., :-2], b[..., 2:]), (a[:, 2:], b[:, :-2]), (a[:, :-2], b[:, 2:])]
        assert any(np.abs(x - y).max() < 1e-6 for x, y in pairs)
    assert 0 < lq.mean() < 1


def test_photographs_become_sequences_with_camera_motion(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    ds = data.SequenceDataset(tmp_path, 4, 4, hr_crop=32, degradation=data.Degradation(), seed=1)
    assert ds.photos and not ds.runs
    lq, gt = ds[0]
    assert lq.shape == (4, 3, 8, 8) and gt.shape == (4, 3, 32, 32)
    assert not torch.equal(gt[0], gt[3])
    path = camera_path(6, 4, np.random.default_rng(0))
    assert path.shape == (6, 2) and (path[0] == 0).all()


def test_sequence_training_runs_validates_exports_and_resumes(tmp_path):
    clips = tmp_path / "clips"
    for i in range(2):
        _write_run(clips / "train", f"clip{i}", 12, seed=i)
        _write_run(clips / "holdout", f"clip{i}", 10, start=12, seed=i)
    init = tmp_path / "per_frame.pt"
    models.save_weights(models.build_model("srresnet", scale=4, num_feat=8, num_block=2), init, arch="srresnet",
                        args={"num_feat": 8, "num_block": 2})

    def config(steps, resume=False, temporal_weight=0.0):
        return TrainConfig(data=[str(clips / "train")], arch="rsrresnet", num_block=2, frames=3, init_from=str(init),
                           scale=4, hr_crop=32, batch_size=2, steps=steps, val_every=2, ckpt_every=2, log_every=1,
                           workers=0, run=str(tmp_path / "run"), device="cpu", precision="fp32", resume=resume,
                           temporal_weight=temporal_weight)

    first = train.train(config(2), progress=False)
    assert first["val"]["images"] == 2 * 10 and first["val"]["psnr_y"] > 0
    # Validation plays the held-out runs in order: the temporal error against the truth is scored beside PSNR.
    assert first["val"]["temporal_error_y"] > 0 and first["val"]["bicubic_temporal_error_y"] > 0
    result = train.train(config(4, resume=True, temporal_weight=0.5), progress=False)  # resumed with the term on
    assert result["step"] == 4
    model = models.load_model(result["model"], 4)
    assert model.arch == "rsrresnet" and model.args["num_feat"] == 8 and model.recurrent
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == [0, 2, 4]
    temporal = [r["step"] for r in log if "temporal" in r.get("losses", {})]
    assert temporal == [3, 4] and all(r["val"]["temporal_error_y"] > 0 for r in log if "val" in r)
    with pytest.raises(Exception, match="--frames 2 or more"):
        train.train(dataclasses.replace(config(4), frames=1, temporal_weight=1.0), progress=False)
    with pytest.raises(Exception, match="--past-lr-scale"):  # the optimiser's groups would not match
        train.train(dataclasses.replace(config(6, resume=True), past_lr_scale=10.0), progress=False)
    faster = dataclasses.replace(config(2), run=str(tmp_path / "faster"), past_lr_scale=10.0)
    assert train.train(faster, progress=False)["step"] == 2
    resumed = dataclasses.replace(faster, steps=3, resume=True, past_lr_scale=5.0)  # another scale: same groups
    assert train.train(resumed, progress=False)["step"] == 3


def test_the_past_can_learn_faster_than_the_rest(tmp_path):
    from vsr.train.sequences import generator_param_groups

    model = tiny()
    rest, past = generator_param_groups(model, TrainConfig(past_lr_scale=10.0))
    assert past["lr_scale"] == 10.0 and "lr_scale" not in rest
    assert {id(p) for p in past["params"]} == {id(p) for p in (*model.conv_temporal.parameters(),
                                                               *model.conv_state.parameters())}
    assert len(rest["params"]) + len(past["params"]) == len(list(model.parameters()))
    assert len(generator_param_groups(model, TrainConfig())) == 1
    per_frame = models.build_model("srresnet", scale=4, num_feat=8, num_block=1)
    assert len(generator_param_groups(per_frame, TrainConfig(past_lr_scale=10.0))) == 1


def test_the_temporal_loss_sees_flicker_not_a_steady_error():
    gt = torch.rand(2, 4, 3, 8, 8)
    steady = gt + 0.1 * torch.rand(1, 1, 3, 8, 8)  # the same error in every frame: no temporal error
    flicker = gt + 0.1 * torch.rand(2, 4, 3, 8, 8)
    assert losses.temporal_difference_loss(steady, gt).item() < 1e-10
    assert losses.temporal_difference_loss(flicker, gt).item() > 1e-4
    with pytest.raises(ValueError, match="T >= 2"):
        losses.temporal_difference_loss(gt[:, :1], gt[:, :1])


def test_frames_needs_a_recurrent_model(tmp_path):
    _write_run(tmp_path / "clips", "clip", 6)
    cfg = TrainConfig(data=[str(tmp_path / "clips")], arch="srresnet", num_feat=8, num_block=1, frames=3, hr_crop=32,
                      batch_size=2, steps=1, workers=0, run=str(tmp_path / "run"), device="cpu")
    with pytest.raises(Exception, match="recurrent"):
        train.train(cfg, progress=False)


def test_two_torchrun_ranks_train_sequences_to_the_same_weights(tmp_path):
    clips = tmp_path / "clips"
    for i in range(2):
        _write_run(clips, f"clip{i}", 10, seed=i)
    run = tmp_path / "run"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(repo),
                                                                                 os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vsr",
            "train", "--data", str(clips), "--arch", "rsrresnet", "--num-feat", "8", "--num-block", "1",
            "--frames", "3", "--hr-crop", "32", "-b", "1", "--workers", "0", "--precision", "fp32", "--steps", "2",
            "--ckpt-every", "2", "--log-every", "1", "--run-dir", str(run)]
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on cpu x2" in done.stderr and "sequences of 3 frames" in done.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    checks = [r for r in log if "weights" in r]
    assert checks and all(len(set(r["weights"]["G"])) == 1 for r in checks)  # both ranks hold the same weights
    assert models.load_model(run / "model.pt", scale=None).recurrent


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fast_cpu_graph_streams_as_the_module_does(precision, arch):
    from vsr.models import fast

    model, frames = tiny(arch=arch), moving_frames()
    upscaler = Upscaler(model, CPU, Precision(precision, "test"))
    assert isinstance(upscaler.graph, fast.FastRecurrentSRResNet)
    streamed = torch.cat([upscaler(frames[i : i + 3]) for i in range(0, len(frames), 3)])
    plain = Upscaler(model, CPU, Precision(precision, "test"))
    plain.graph = plain.model  # the module itself
    reference = torch.cat([plain(frames[i : i + 3]) for i in range(0, len(frames), 3)])
    assert (streamed.int() - reference.int()).abs().max() <= 1


def _decoded(path: Path) -> tuple[np.ndarray, list[int]]:
    import av

    with av.open(str(path)) as container:
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return np.stack([a for _, a in frames]).astype(np.int16), [p for p, _ in frames]


def test_a_resumed_run_warms_the_state_and_stays_close_to_an_uninterrupted_one(tmp_path, monkeypatch):
    """A crash after 12 frames, then --resume: the second run starts at frame 10 (two 5-frame segments kept), with
    8 frames of warm-up before it; frame count and pts are exact, pixels close (lossless output to compare them)."""
    def panning(index: int, width: int, height: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width]
        return np.stack([(x * 7 + index * 2) % 256, (y * 5 + x) % 256, ((x + y) * 3 - index) % 256], -1).astype(
            np.uint8)

    source = make_clip(tmp_path / "in.mp4", frames=30, size=(48, 32), picture=panning, audio=False)
    model = tiny()
    cfg = dict(device="cpu", precision="fp32", batch_size=2, codec="ffv1")
    whole = enhance_video(source, tmp_path / "whole.mkv", model, EnhanceConfig(**cfg))
    resumed_cfg = EnhanceConfig(**cfg, resume=True, segment_frames=5)
    enhance_until_crash(source, tmp_path / "resumed.mkv", model, resumed_cfg)
    resumed = enhance_video(source, tmp_path / "resumed.mkv", model, resumed_cfg)
    assert resumed.reused_frames == 10 and resumed.frames_out == whole.frames_out == 30 and resumed.verified
    a, pts_a = _decoded(tmp_path / "whole.mkv")
    b, pts_b = _decoded(tmp_path / "resumed.mkv")
    assert pts_a == pts_b
    assert np.array_equal(a[:10], b[:10])  # the kept segments are the first run's frames
    diff = np.abs(a[10:] - b[10:])
    # The state after 8 warm-up frames is not the state after 10 frames of history: a little different at first,
    # and the same picture (measured: well under a grey level on average for this model).
    print(f"resumed vs uninterrupted: mean {diff.mean():.3f}, max {diff.max()} grey levels")
    assert diff.mean() < 1.0, diff.mean()


def test_an_excerpt_is_warmed_on_the_frames_before_it(tmp_path, monkeypatch):
    source = make_clip(tmp_path / "in.mp4", frames=30, size=(48, 32), audio=False)
    seen = []
    real_call = Upscaler.__call__
    monkeypatch.setattr(Upscaler, "__call__", lambda self, frames: seen.append(len(frames)) or real_call(self, frames))
    result = enhance_video(source, tmp_path / "cut.mkv", tiny(), EnhanceConfig(device="cpu", precision="fp32",
                                                                               codec="ffv1", start=1.5, end=2.5))
    assert result.frames_out == 10 and result.verified
    assert sum(seen) == 10 + models.RecurrentSRResNet.warmup_frames  # frames 7-14 warm it, 15-24 are written
    assert _decoded(tmp_path / "cut.mkv")[1][0] == 0  # the excerpt starts at 0 as before
