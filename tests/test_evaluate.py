"""The evaluator: the paper protocol on tiny folders and clips, checked against numbers computed independently here
(and, where the shared benchmarks are present, against the published bicubic Set5 x4 figure)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_clip
from vsr import data, evaluate, models, video
from vsr.cli_eval import eval_cmd, prepare_cmd
from vsr.errors import VsrError

SET5 = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "benchmarks" / "Set5"


@pytest.fixture
def hr_folder(tmp_path) -> Path:
    """Three small images of different, non-multiple-of-4 sizes (mod-crop matters)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i, (w, h) in enumerate([(50, 41), (64, 48), (37, 45)]):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 5 + 9 * i, y * 4, (x * y) % 200], axis=-1) + rng.integers(0, 25, (h, w, 3))
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def tiny_model(scale: int = 4):
    torch.manual_seed(0)
    return models.build_model("srresnet", scale=scale, num_feat=4, num_block=1).eval()


def _y_psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR on BT.601 Y written out independently of vsr.metrics."""

    def y(img):
        rgb = img.astype(np.float64) / 255.0
        return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]

    diff = (y(a) - y(b))[border:-border, border:-border]
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


def test_bicubic_model_scores_exactly_bicubic(hr_folder):
    result = evaluate.evaluate_folder(hr_folder, models.load_model("bicubic", scale=4), 4, device="cpu")
    assert result["images"] == 3 and result["scale"] == 4 and result["border"] == 4
    for key in ("model", "psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "per_image"):
        assert key in result
    assert result["psnr_y"] == result["bicubic_psnr_y"] and result["ssim_y"] == result["bicubic_ssim_y"]
    assert [r["name"] for r in result["per_image"]] == ["im0.png", "im1.png", "im2.png"]
    json.dumps(result)  # the --json output is plain JSON


def test_psnr_matches_an_independent_computation(hr_folder):
    kept = {}
    result = evaluate.evaluate_folder(
        hr_folder, tiny_model(), 4, device="cpu", precision="fp32",
        on_image=lambda name, hr, lr, bic, sr: kept.setdefault(name, (hr, lr, bic, sr)),
    )
    for row in result["per_image"]:
        hr, lr, bic, sr = kept[row["name"]]
        assert hr.shape[0] % 4 == 0 and hr.shape[1] % 4 == 0 and sr.shape == hr.shape
        assert np.array_equal(lr, data.bicubic_downscale(hr, 4))
        assert row["psnr"] == pytest.approx(_y_psnr(sr, hr, 4), abs=1e-9)
        assert row["bicubic_psnr"] == pytest.approx(_y_psnr(bic, hr, 4), abs=1e-9)
    assert result["psnr_y"] == pytest.approx(np.mean([r["psnr"] for r in result["per_image"]]))


def test_bf16_scores_close_to_fp32_and_records_the_precision(hr_folder):
    fp32 = evaluate.evaluate_folder(hr_folder, tiny_model(), 4, device="cpu", precision="fp32")
    bf16 = evaluate.evaluate_folder(hr_folder, tiny_model(), 4, device="cpu", precision="bf16")
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    assert abs(fp32["psnr_y"] - bf16["psnr_y"]) < 0.5


def test_realistic_degradation_is_seeded_per_image(hr_folder):
    runs = [evaluate.evaluate_folder(hr_folder, tiny_model(), 4, "realistic", "cpu", "fp32", seed=s) for s in (0, 0, 1)]
    assert runs[0]["per_image"] == runs[1]["per_image"]
    assert runs[0]["bicubic_psnr_y"] != runs[2]["bicubic_psnr_y"]
    assert runs[0]["degrade"] == "realistic"


def test_errors_are_one_line_vsr_errors(hr_folder, tmp_path):
    with pytest.raises(VsrError, match="upscales x4"):
        evaluate.evaluate_folder(hr_folder, tiny_model(4), 2, device="cpu")
    with pytest.raises(VsrError, match="no such folder"):
        evaluate.evaluate_folder(tmp_path / "missing", tiny_model(), 4, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VsrError, match="no images"):
        evaluate.evaluate_folder(tmp_path / "empty", tiny_model(), 4, device="cpu")


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 benchmark not present")
def test_set5_bicubic_x4_matches_the_published_figure():
    result = evaluate.evaluate_folder(SET5, models.load_model("bicubic", scale=4), 4, device="cpu")
    assert result["images"] == 5
    assert result["bicubic_psnr_y"] == pytest.approx(28.43, abs=0.05)


def test_video_scores_every_frame_and_temporal_error(tmp_path):
    clip = make_clip(tmp_path / "hr.mp4", frames=8, size=(64, 48), audio=False)
    result = evaluate.evaluate_video(clip, models.load_model("bicubic", scale=4), 4, device="cpu", batch_size=3)
    assert result["frames"] == result["images"] == 8
    assert result["psnr_y"] == result["bicubic_psnr_y"]
    assert result["temporal_error_y"] == result["bicubic_temporal_error_y"] > 0
    assert result["flicker_y"] == result["bicubic_flicker_y"] > 0
    # Both figures written out from their definitions on Y, border cut: over the pairs t = 1..7 of
    # d = (sr_t - sr_t-1) - (hr_t - hr_t-1), the RMS of d over every pixel of every pair, and the mean of |d|.
    frames = np.concatenate([b.frames for b in video.read_frames(clip)])
    ys_hr, ys_sr = [], []
    for frame in frames:
        sr = data.bicubic_upscale(data.bicubic_downscale(frame, 4), 4).astype(np.float64) / 255
        hr = frame.astype(np.float64) / 255
        ys_hr.append((16 + hr @ [65.481, 128.553, 24.966])[4:-4, 4:-4])
        ys_sr.append((16 + sr @ [65.481, 128.553, 24.966])[4:-4, 4:-4])
    d = np.stack([(ys_sr[t] - ys_sr[t - 1]) - (ys_hr[t] - ys_hr[t - 1]) for t in range(1, 8)])
    assert result["temporal_error_y"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-9)
    assert result["flicker_y"] == pytest.approx(np.mean(np.abs(d)), rel=1e-9)
    model = evaluate.evaluate_video(clip, tiny_model(), 4, device="cpu", precision="fp32", max_frames=5)
    assert model["frames"] == 5 and model["temporal_error_y"] > 0
    one = evaluate.evaluate_video(clip, tiny_model(), 4, device="cpu", precision="fp32", max_frames=1)
    assert one["frames"] == 1 and one["temporal_error_y"] is None and one["flicker_y"] is None


SEEN: list[np.ndarray] = []  # the LR frames _Recorder was given (module level: the Upscaler runs a copy of it)


class _Recorder(torch.nn.Module):
    """A per-frame x4 model that notes every LR frame it is given, in the order given, in SEEN."""

    scale = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN.extend(np.rint(x.float().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")


def test_video_frames_reach_the_model_in_order_and_folders_reset(tmp_path, hr_folder, monkeypatch):
    resets = []
    monkeypatch.setattr(evaluate.Upscaler, "reset_state", lambda self: resets.append(len(SEEN)))
    SEEN.clear()
    recorder = _Recorder()
    clip = make_clip(tmp_path / "hr.mp4", frames=7, size=(32, 24), audio=False)
    # Batches of 2 inside runs of 3: every call boundary falls somewhere else, the order must still hold.
    evaluate.evaluate_video(clip, recorder, 4, device="cpu", precision="fp32", batch_size=2, run_frames=3)
    frames = np.concatenate([b.frames for b in video.read_frames(clip)])
    np.testing.assert_array_equal(np.stack(SEEN), [data.bicubic_downscale(f, 4) for f in frames])
    assert resets == [0]  # once, before the first frame: one video is one stream
    # A realistic LR video is coded run by run (H.264 over each run of 3 frames), and still reaches the model whole.
    chain = data.Degradation("realistic", video_prob=1.0, mpeg2_prob=0.0, crf=(30, 30), second_order_prob=0.0)
    coded = evaluate.evaluate_video(clip, _Recorder(), 4, chain, device="cpu", precision="fp32", run_frames=3)
    assert coded["frames"] == 7 and coded["temporal_error_y"] > 0
    # Images of a folder are unrelated: the state is forgotten before each one.
    SEEN.clear()
    resets.clear()
    evaluate.evaluate_folder(hr_folder, recorder, 4, device="cpu", precision="fp32")
    assert resets == [0, 1, 2]


def test_cli_eval_table_json_and_video(hr_folder, tmp_path):
    runner = CliRunner()
    table = runner.invoke(eval_cmd, [str(hr_folder), "-s", "4", "-m", "bicubic", "--device", "cpu"])
    assert table.exit_code == 0, table.output
    assert "im1.png" in table.output and "mean (3)" in table.output and "bicubic PSNR" in table.output
    out = runner.invoke(eval_cmd, [str(hr_folder), "-s", "4", "-m", "bicubic", "--json", "--device", "cpu"])
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["model"] == "bicubic" and result["images"] == 3
    weights = tmp_path / "tiny_x4.pt"
    models.save_weights(tiny_model(), weights, arch="srresnet", args={"num_feat": 4, "num_block": 1})
    clip = make_clip(tmp_path / "hr.mp4", frames=4, size=(64, 48), audio=False)
    vid = runner.invoke(eval_cmd, ["--video", str(clip), "--weights", str(weights), "--precision", "fp32",
                                   "--device", "cpu", "--json"])
    assert vid.exit_code == 0, vid.output
    assert json.loads(vid.output.strip().splitlines()[-1])["frames"] == 4
    printed = runner.invoke(eval_cmd, ["--video", str(clip), "-m", "bicubic", "-s", "4", "--device", "cpu"])
    assert printed.exit_code == 0 and "temporal error, RMS" in printed.output and "flicker" in printed.output
    neither = runner.invoke(eval_cmd, ["-m", "bicubic"])
    assert neither.exit_code == 1 and neither.output.startswith("Error: give a folder")
    missing = runner.invoke(eval_cmd, [str(hr_folder), "-m", "nosuchmodel"])
    assert missing.exit_code == 1 and "Error: no weights for nosuchmodel" in missing.output


def test_cli_prepare_extracts_frames(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", frames=6, audio=False)
    result = CliRunner().invoke(prepare_cmd, [str(clips), str(tmp_path / "out"), "--every", "2", "--holdout", "0.4"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert len(written) >= 2 and "wrote" in result.output
