"""Your own trained model, used at once, as a new user would: `vsr prepare` -> `vsr train` -> `vsr enhance --weights`
with the run's own folder, checkpoint or exported model.pt; fine-tuning a shipped model; TensorBoard events."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
import torch
from click.testing import CliRunner
from conftest import make_clip

from vsr import models
from vsr.cli import cli

TINY = ("--num-feat", "8", "--num-block", "1", "--hr-crop", "32", "-b", "2", "--workers", "0", "--precision", "fp32",
        "--log-every", "1")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """prepare -> train (3 steps) on a real clip, once for the module."""
    root = tmp_path_factory.mktemp("own")
    clips = root / "clips"
    clips.mkdir()
    clip = make_clip(clips / "street.mp4", frames=8, size=(64, 48))
    frames = root / "frames"
    result = run("prepare", clips, frames, "--holdout", "0.25")
    assert result.exit_code == 0, result.output
    runs = root / "runs" / "mine"
    result = run("train", "--data", frames / "train", "-s", "2", "--steps", "3", "--val-every", "3", "--run", runs,
                 *TINY)
    assert result.exit_code == 0, result.output
    return {"clip": clip, "frames": frames, "run": runs, "stderr": result.stderr}


def test_every_run_exports_its_weights_and_says_how_to_use_them(trained):
    model_pt = trained["run"] / "model.pt"
    assert model_pt.is_file()
    assert f"vsr enhance INPUT --weights {model_pt}" in trained["stderr"]
    # The run validated on the frames `vsr prepare --holdout` set aside, found beside --data frames/train.
    assert f"validation: {trained['frames'] / 'holdout'}" in trained["stderr"]
    model = models.load_model(model_pt, scale=None)
    assert model.arch == "srresnet" and model.scale == 2 and model.meta["trained_steps"] == 3


@pytest.mark.parametrize("which", ["model.pt", "ckpt.pt", "folder"])
def test_enhance_takes_the_run_s_weights(trained, tmp_path, which):
    weights = trained["run"] if which == "folder" else trained["run"] / which
    out = tmp_path / "out.mp4"
    result = run("enhance", trained["clip"], "--weights", weights, "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.width == 128  # x2, read from the weights
    assert "8/8 frames" in result.stderr


def test_the_checkpoint_and_the_export_are_the_same_model(trained):
    a = models.load_model(trained["run"] / "ckpt.pt", scale=None)
    b = models.load_model(trained["run"] / "model.pt", scale=None)
    x = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


def test_eval_takes_a_run_folder(trained):
    result = run("eval", trained["frames"] / "holdout", "--weights", trained["run"], "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert '"scale": 2' in result.output


def test_tensorboard_events_are_written(trained):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained["run"] / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss/pix", "lr", "val/psnr_y"} <= set(tags), tags
    assert [e.step for e in events.Scalars("loss/pix")] == [1, 2, 3]


def test_fine_tune_a_shipped_model(trained, tmp_path):
    """`--init-from srresnet_real_x4`: the shipped network, trained further on one's own frames."""
    runs = tmp_path / "tuned"
    result = run("train", "--data", trained["frames"] / "train", "--init-from", "srresnet_real_x4", "--steps", "1",
                 "--hr-crop", "32", "-b", "1", "--workers", "0", "--precision", "fp32", "--run", runs)
    assert result.exit_code == 0, result.output
    tuned = models.load_model(runs / "model.pt", scale=None)
    shipped = models.load_model("srresnet_real", scale=4)
    assert tuned.args == shipped.args and tuned.meta["init_from"] == "srresnet_real_x4"
    bad = run("train", "--data", trained["frames"] / "train", "--init-from", "nosuchmodel_x4", "--run", tmp_path / "x")
    assert bad.exit_code == 1 and "no shipped weights of that name" in bad.stderr


def test_inspect_describes_a_run(trained):
    result = run("models", "--inspect", trained["run"])
    assert result.exit_code == 0, result.output
    assert "srresnet x2 (vsr)" in result.output and "trained_steps 3" in result.output
    checkpoint = run("models", "--inspect", trained["run"] / "ckpt.pt", "--json")
    assert '"format": "vsr training checkpoint"' in checkpoint.output
