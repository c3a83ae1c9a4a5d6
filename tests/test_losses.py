"""VGG19 perceptual loss through its real file-loading path, and the adversarial BCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vsr.errors import VsrError
from vsr.losses import VGG19_FILE, VGG19_LAYERS, PerceptualLoss, adversarial_loss, default_vgg_weights, sharpened_target


@pytest.fixture(scope="module")
def vgg_features():
    """A randomly initialised torchvision VGG19 feature stack (the classifier, 120M parameters, is not needed)."""
    torch.manual_seed(0)
    with torch.device("meta"):
        vgg = torchvision.models.vgg19(weights=None)
    features = vgg.features.to_empty(device="cpu").eval()
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    return features, list(vgg.state_dict())


@pytest.fixture
def features_file(tmp_path, vgg_features):
    path = tmp_path / "vgg19_features.pth"
    torch.save(vgg_features[0].state_dict(), path)
    return path


@pytest.fixture
def full_file(tmp_path, vgg_features):
    """A file with every key of ``vgg19().state_dict()``; classifier tensors are stand-ins (they are never read)."""
    features, full_keys = vgg_features
    feats = features.state_dict()
    state = {k: feats[k.removeprefix("features.")] if k.startswith("features.") else torch.zeros(1) for k in full_keys}
    path = tmp_path / VGG19_FILE
    torch.save(state, path)
    return path


def test_layer_names_follow_torchvision_indices():
    assert len(VGG19_LAYERS) == 37
    assert VGG19_LAYERS[35] == "relu5_4" and VGG19_LAYERS[8] == "relu2_2" and VGG19_LAYERS[34] == "conv5_4"


@pytest.mark.parametrize("fmt", ["features", "full"])
def test_perceptual_loss_equals_scaled_feature_mse(fmt, features_file, full_file, vgg_features):
    loss_fn = PerceptualLoss(features_file if fmt == "features" else full_file)
    torch.manual_seed(1)
    sr = torch.rand(2, 3, 32, 32, requires_grad=True)
    gt = torch.rand(2, 3, 32, 32)
    loss = loss_fn(sr, gt)
    assert loss.ndim == 0 and torch.isfinite(loss)

    reference = vgg_features[0][:36]  # up to and including relu5_4
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.mse_loss(reference((sr - mean) / std), reference((gt - mean) / std)) / 12.75**2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)

    loss.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())


def test_perceptual_loss_layer_choice_and_frozen_eval(features_file):
    loss_fn = PerceptualLoss(features_file, layer="relu2_2", scale=1.0)
    assert len(loss_fn.features) == 9 and isinstance(loss_fn.features[-1], torch.nn.ReLU)
    loss_fn.train()
    assert not any(m.training for m in loss_fn.modules())
    x = torch.rand(1, 3, 16, 16)
    assert loss_fn(x, x).item() == 0.0
    with pytest.raises(VsrError, match="unknown VGG19 layer"):
        PerceptualLoss(features_file, layer="relu6_1")


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    assert default_vgg_weights() == tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE
    with pytest.raises(VsrError) as err:
        PerceptualLoss()
    msg = str(err.value)
    assert VGG19_FILE in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "--perceptual-weights" in msg and "--perceptual none" in msg and "\n" not in msg
    with pytest.raises(VsrError, match="nope.pth"):
        PerceptualLoss(tmp_path / "nope.pth")


def test_unreadable_or_wrong_weights(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(VsrError, match="cannot read VGG19 weights"):
        PerceptualLoss(junk)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(VsrError, match="not a VGG19 state dict"):
        PerceptualLoss(other)


def test_adversarial_loss_values():
    zeros = torch.zeros(4, 1)
    assert adversarial_loss(zeros, True).item() == pytest.approx(math.log(2))
    assert adversarial_loss(zeros, False).item() == pytest.approx(math.log(2))
    confident_real = torch.full((4, 1), 20.0)
    assert adversarial_loss(confident_real, True).item() < 1e-6
    assert adversarial_loss(confident_real, False).item() == pytest.approx(20.0, rel=1e-6)
    logits = torch.randn(8, 1, requires_grad=True)
    adversarial_loss(logits, True).backward()
    assert (logits.grad <= 0).all()  # pushing toward "real" raises every logit


def test_sharpened_target_steepens_edges_and_leaves_flat_regions_and_grain_alone():
    torch.manual_seed(0)
    step = torch.zeros(1, 3, 64, 64)
    step[..., 32:] = 0.8
    step[..., :32] = 0.2
    grain = (torch.rand(1, 3, 64, 64) - 0.5) * 0.02  # +-1.3 grey levels: under the 10-level threshold
    gt = (step + grain).clamp(0, 1)
    sharp = sharpened_target(gt, 0.5)
    assert sharp.shape == gt.shape and sharp.min() >= 0 and sharp.max() <= 1
    assert sharpened_target(gt, 0) is gt
    # Overshoot on both sides of the edge: darker just left of it, brighter just right.
    assert sharp[..., 28:32].mean() < gt[..., 28:32].mean() - 0.02
    assert sharp[..., 32:36].mean() > gt[..., 32:36].mean() + 0.02
    # Far from the edge the grain is left as it was (the mask is off there).
    far = (slice(None), slice(None), slice(None), slice(0, 8))
    assert torch.allclose(sharp[far], gt[far], atol=1e-3)
