"""scripts/footage_benchmark.py on a tiny real clip: chains, scores, the peers' loaders, the table and the grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import load_script, make_clip
from vsr import data, metrics, models, video
from vsr.precision import Precision



@pytest.fixture(scope="module")
def bench():
    return load_script("footage_benchmark")


def _moving(index: int, height: int, width: int) -> np.ndarray:
    """A textured picture panning 2 px per frame, so consecutive frames differ as footage does."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x = x + 2 * index
    img = np.stack([128 + 90 * np.sin(x / 5), 128 + 90 * np.cos(y / 7), (x * 3 + y * 2) % 256], axis=-1)
    return img.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("use_spandrel", [True, False])
def test_peers_load_from_real_esrgan_files(bench, tmp_path, use_spandrel):
    torch.manual_seed(0)
    rrdb = bench.RRDBNet(num_block=1, num_feat=8, num_grow_ch=32)  # spandrel infers 32 whatever the file
    compact = bench.SRVGGNetCompact(num_feat=8, num_conv=2)
    torch.save({"params_ema": rrdb.state_dict()}, tmp_path / "RealESRGAN_x4plus_from_ncnn.pth")
    torch.save({"params": compact.state_dict()}, tmp_path / "realesr-animevideov3_from_ncnn.pth")
    x = torch.rand(1, 3, 8, 10)
    for net, name in ((rrdb, "RealESRGAN_x4plus_from_ncnn.pth"), (compact, "realesr-animevideov3_from_ncnn.pth")):
        peer = bench.load_peer(tmp_path / name, use_spandrel)  # without spandrel: the script's own definitions
        with torch.no_grad():
            assert torch.allclose(peer(x), net.eval()(x), atol=1e-5)
        assert peer.scale == 4 and peer(x).shape == (1, 3, 32, 40)
    assert bench.peer_name(tmp_path / "RealESRGAN_x4plus_from_ncnn.pth") == "peer x4plus"


def test_benchmark_scores_every_model_on_every_chain(bench, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=20, size=(96, 64), picture=_moving, audio=False)
    torch.manual_seed(0)
    tiny = models.build_model("srresnet", scale=4, num_feat=4, num_block=1).eval()
    chosen = {"bicubic": None, "tiny": tiny}
    result = bench.run_benchmark({"given": [clip]}, chosen, frames=3, crop=(64, 48), seed=1, precision="fp32",
                                 lead_in=2, log=lambda _: 0)
    assert set(result["scores"]["given"]) == {"bicubic", "tiny"} and list(result["chains"]) == list(bench.CHAINS)
    for per_chain in result["scores"]["given"].values():
        for s in per_chain.values():
            assert np.isfinite(s["psnr"]) and 0 < s["ssim"] <= 1 and s["terr"] > 0 and s["flicker"] > 0
    # The run is the clip's held-out end (its last 20 %: frames 16-18 of 20) after 2 lead-in frames (14, 15).
    run, lead, start = bench.clip_run(clip, 3, (64, 48), lead_in=2)
    assert run.shape == (5, 48, 64, 3) and (lead, start) == (2, 16) and result["lead_in"] == {"clip.mp4": 2}
    decoded = np.concatenate([b.frames for b in video.read_frames(clip)])
    top, left, h, w = bench.motion_crop(decoded[16:19], (64, 48))
    np.testing.assert_array_equal(run, decoded[14:19, top : top + h, left : left + w])
    # The bicubic row is the protocol's bicubic on the chain's LR of the whole run (lead-in coded with it, so every
    # model gets the same LR), which is seeded: recomputed here, it agrees.
    lr = bench.chain("h264_crf28").degrade_clip(run, 4, bench.clip_seed(1, "h264_crf28", "clip.mp4"))
    sr = [data.bicubic_upscale(f, 4) for f in lr[2:]]
    expected = np.mean([metrics.psnr_ssim_y(f, h, 4)[0] for f, h in zip(sr, run[2:])])
    assert result["scores"]["given"]["bicubic"]["h264_crf28"]["psnr"] == pytest.approx(expected, abs=1e-6)
    terr = metrics.temporal_error([metrics.rgb_to_y(f) for f in sr], [metrics.rgb_to_y(f) for f in run[2:]], 4)
    assert result["scores"]["given"]["bicubic"]["h264_crf28"]["terr"] == pytest.approx(terr, rel=1e-9)
    # The clean chain is the papers' LR: antialiased bicubic, no codec.
    np.testing.assert_array_equal(bench.chain("clean_x4").degrade_clip(run, 4, np.random.default_rng(0)),
                                  [data.bicubic_downscale(f, 4) for f in run])
    # Harsher chains lose more: CRF 33 below CRF 23 below clean, for bicubic.
    bicubic = result["scores"]["given"]["bicubic"]
    assert bicubic["h264_crf33"]["psnr"] < bicubic["h264_crf23"]["psnr"] < bicubic["clean_x4"]["psnr"]
    assert result["recorder_chains"] == [c for c in bench.CHAINS if c != "clean_x4"]
    tables = bench.markdown_tables(result["scores"]["given"], list(result["chains"]), result["recorder_chains"])
    assert "| tiny |" in tables and "**" in tables and "mean tErr (recorders)" in tables and "flicker" in tables
    assert tables.split("\n\n")[0].count("\n") == 3  # header, rule, two models
    assert "### given: clip.mp4" in bench.report(result, "CPU")
    bench.picture_grid(result, tmp_path / "grid.png", side=32)
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (32 * 4, 32 + 14)  # LR, bicubic, tiny, original; one clip


SEEN: dict[str, list[np.ndarray]] = {}  # LR frames each _Recorder was given, by name (the Upscaler runs a copy)


class _Recorder(torch.nn.Module):
    """A per-frame x4 model that notes every LR frame it is given, in order, in SEEN[name]; ``recurrent`` as asked."""

    scale = 4

    def __init__(self, name: str, recurrent: bool) -> None:
        super().__init__()
        self.name, self.recurrent = name, recurrent
        SEEN[name] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN[self.name].extend(np.rint(x.float().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    def step(self, lq: torch.Tensor, state=None):
        """What `Upscaler` calls on a recurrent model: one frame of N streams, with the state (none here)."""
        return self(lq), state


def test_models_get_consecutive_frames_in_order_with_a_reset_per_clip_and_chain(bench, tmp_path, monkeypatch):
    clips = [make_clip(tmp_path / f"{n}.mp4", frames=30, size=(48, 32), picture=_moving, audio=False)
             for n in ("a", "b")]
    events = []
    monkeypatch.setattr(bench.Upscaler, "reset_state", lambda self: events.append("reset"))
    per_frame, recurrent = _Recorder("per_frame", False), _Recorder("recurrent", True)
    chains = ["clean_x4", "h264_crf28"]
    result = bench.run_benchmark({"given": clips}, {"per_frame": per_frame, "recurrent": recurrent}, frames=6,
                                 crop=(48, 32), precision="fp32", chains=chains, lead_in=3, log=lambda _: 0)
    assert events == ["reset"] * 8  # two models x two chains x two clips, one reset before each run
    # What each model saw is each chain's LR of each clip, run after run, in presentation order: the recurrent one
    # from the first lead-in frame (frames 21-29 of 30: 3 lead-in, then the held-out 24-29), the per-frame one only
    # the 6 scored frames.
    expected_recurrent, expected_per_frame = [], []
    for c in chains:
        for clip in clips:
            run, lead, _ = bench.clip_run(clip, 6, (48, 32), lead_in=3)
            lr = bench.chain(c).degrade_clip(run, 4, bench.clip_seed(0, c, clip.name))
            assert lead == 3 and len(lr) == 9
            expected_recurrent.extend(lr)
            expected_per_frame.extend(lr[lead:])
    np.testing.assert_array_equal(np.stack(SEEN["recurrent"]), np.stack(expected_recurrent))
    np.testing.assert_array_equal(np.stack(SEEN["per_frame"]), np.stack(expected_per_frame))
    # Nearest-neighbour output of the same LR: the lead-in changes nothing a per-frame model scores.
    assert result["per_clip"]["recurrent"] == result["per_clip"]["per_frame"]


def test_held_out_run_starts_where_the_clip_moves(bench, tmp_path):
    # Still but for frames 10-15, which pan: the busiest 5-frame run spans the pan, not the held-out end.
    clip = make_clip(tmp_path / "clip.mp4", frames=30, size=(64, 48), audio=False,
                     picture=lambda i, h, w: _moving(3 * min(max(i, 10), 15), h, w))
    run, lead, start = bench.clip_run(clip, 5, (64, 48), lead_in=2, busiest=True)
    assert start in (10, 11) and lead == 2 and len(run) == 7
    assert bench.clip_run(clip, 5, (64, 48))[2] == 24


def test_crop_follows_the_motion(bench):
    frames = np.full((4, 96, 160, 3), 100, np.uint8)
    for t in range(4):
        frames[t, 60:80, 110 + 5 * t : 120 + 5 * t] = 250  # a bright block moving right in the bottom right
    top, left, h, w = bench.motion_crop(frames, (64, 48))
    assert (h, w) == (48, 64) and top <= 60 and top + h >= 80 and left <= 110 and left + w >= 135
    assert bench.motion_crop(frames[:1], (64, 48)) == (24, 48, 48, 64)  # nothing moves: the centred crop


def test_command_line_scores_a_weights_file_and_names_bad_input(bench, tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(48, 32), picture=_moving, audio=False)
    weights = tmp_path / "cand_x4.pt"
    models.save_weights(models.build_model("srresnet", scale=4, num_feat=4, num_block=1), weights, arch="srresnet",
                        args={"num_feat": 4, "num_block": 1})
    out = tmp_path / "out"
    argv = ["footage_benchmark.py", str(clip), "--set", "none", "--weights", str(weights), "--models",
            "bicubic", "--chains", "clean_x4,h264_crf28", "--frames", "3", "--lead-in", "1", "--crop",
            "48x32", "--precision", "fp32", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    text = (out / "footage.md").read_text()
    assert "| cand_x4 |" in text and "| bicubic |" in text and "### given: clip.mp4" in text
    saved = json.loads((out / "footage.json").read_text())
    assert set(saved["scores"]["given"]) == {"bicubic", "cand_x4"} and (out / "footage_grid.png").is_file()
    # An earlier run's rows join the tables of a run with the same settings (a new model scored beside old ones).
    monkeypatch.setattr("sys.argv", [*argv[:7], "none", *argv[8:-2], "--with", str(out / "footage.json"),
                                     "--out", str(tmp_path / "joined")])
    bench.main()
    joined = json.loads((tmp_path / "joined" / "footage.json").read_text())
    assert list(joined["scores"]["given"]) == ["bicubic", "cand_x4"]
    assert joined["scores"]["given"]["cand_x4"] == saved["scores"]["given"]["cand_x4"]
    for bad, message in ((["--models", "nosuch"], "no model named nosuch"), (["--chains", "vhs"], "unknown chain"),
                         (["--crop", "big"], "--crop must be"), (["--with", str(tmp_path / "no.json")], "--with"),
                         (["--frames", "4", "--with", str(out / "footage.json")], "frames"),
                         (["--weights", str(tmp_path / "missing.pt")], "no such weights file")):
        monkeypatch.setattr("sys.argv", [*argv, *bad])
        with pytest.raises(SystemExit) as exit_info:
            bench.main()
        assert str(exit_info.value).startswith("Error: ") and message in str(exit_info.value)


def test_a_recurrent_model_is_scored_at_steady_state_as_one_long_pass(bench, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=30, size=(48, 32), picture=_moving, audio=False)
    torch.manual_seed(0)
    net = models.build_model("rsrresnet", scale=4, num_feat=4, num_block=1, num_state=2, cut_threshold=0).eval()
    torch.nn.init.normal_(net.conv_temporal.weight, std=0.3)  # untrained it starts at zero: make the past count
    result = bench.run_benchmark({"given": [clip]}, {"rsr": net}, frames=6, crop=(48, 32), precision="fp32",
                                 chains=["clean_x4"], lead_in=5, log=lambda _: 0)
    # Batches of 4 after a reset, lead-in first: the same as one pass over lead-in and run from a fresh state.
    run, lead, _ = bench.clip_run(clip, 6, (48, 32), lead_in=5)
    lr = bench.chain("clean_x4").degrade_clip(run, 4, bench.clip_seed(0, "clean_x4", "clip.mp4"))
    upscaler = bench.Upscaler(net, torch.device("cpu"), Precision("fp32", "test"))
    one_pass = upscaler(torch.from_numpy(lr)).numpy()[lead:]
    assert result["per_clip"]["rsr"]["clean_x4"]["clip.mp4"] == bench.score(one_pass, run[lead:])
    # Without the lead-in the first frames start cold, and the score differs.
    cold = bench.run_benchmark({"given": [clip]}, {"rsr": net}, frames=6, crop=(48, 32), precision="fp32",
                               chains=["clean_x4"], lead_in=0, log=lambda _: 0)
    assert cold["per_clip"]["rsr"]["clean_x4"]["clip.mp4"] != result["per_clip"]["rsr"]["clean_x4"]["clip.mp4"]
