"""Tests for vsr.models: shapes at every scale, BN folding, weight files and their failure modes, FLOP counting.

Tiny configs (num_feat=4, num_block=1) and inputs of a few pixels keep this to seconds on two shared CPU cores.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vsr.errors import VsrError
from vsr.models import (
    MODELS,
    SCALES,
    Discriminator,
    SRResNet,
    build_model,
    count_flops,
    find_weights,
    fold_batchnorm,
    list_models,
    load_model,
    load_weights_file,
    save_weights,
)

# The smallest config of each architecture (bicubic has nothing to shrink).
TINY = {
    "srresnet": dict(num_feat=4, num_block=1),
    "rsrresnet": dict(num_feat=4, num_block=1, num_state=2),
    "arsrresnet": dict(num_feat=4, num_block=1, num_state=2),
    "srcnn": dict(num_feat=4, num_feat2=4),
    "fsrcnn": dict(num_feat=4, num_shrink=2, num_map=1),
    "espcn": dict(num_feat=4, num_feat2=4),
    "encdec": dict(num_feat=4, num_down=1, num_block=1),
    "bicubic": {},
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def tiny(arch: str, scale: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, scale=scale, **TINY[arch]).eval()


def lq_batch(h: int = 7, w: int = 9) -> torch.Tensor:
    # Odd sizes on purpose: frames are not multiples of anything (e.g. encdec's internal padding).
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, as a trained model would have."""
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("VSR_WEIGHTS_DIR", str(d))
    return d


def test_registry():
    assert list_models() == list(MODELS)
    assert set(list_models()) == {"srresnet", "rsrresnet", "arsrresnet", "srcnn", "fsrcnn", "espcn", "encdec",
                                  "bicubic"}
    with pytest.raises(VsrError, match="unknown model"):
        build_model("nope")
    with pytest.raises(VsrError, match="bad arguments"):
        build_model("espcn", num_blocks=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("arch", list_models())
def test_forward_shape(arch, scale, device):
    model = tiny(arch, scale).to(device)
    assert model.scale == scale
    with torch.no_grad():
        out = model(lq_batch().to(device))
    assert out.shape == (2, 3, 7 * scale, 9 * scale)
    assert out.dtype == torch.float32 and out.device.type == device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", list_models())
def test_bad_scale(arch):
    for scale in (1, 5, 2.0):
        with pytest.raises(VsrError, match="scale must be one of"):
            build_model(arch, scale=scale, **TINY[arch])


def test_bicubic_is_interpolate_clamped():
    lq = lq_batch()
    out = build_model("bicubic", scale=2)(lq)
    ref = nn.functional.interpolate(lq, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.equal(out, ref.clamp(0, 1))
    assert out.min() >= 0 and out.max() <= 1 and ref.max() > 1 - 1e-3  # overshoot exists and is clamped
    assert list(build_model("bicubic").state_dict()) == []


def test_paper_srresnet_parameter_count():
    """Default SRResNet x4 has exactly the paper's layers (and so ~1.55M parameters)."""
    f, b = 64, 16
    conv_first = 3 * f * 81 + f + f  # 9x9 conv with bias, per-channel PReLU
    block = 2 * f * f * 9 + 2 * 2 * f + f  # two bias-free 3x3 convs, two BNs (weight, bias), PReLU
    conv_body = f * f * 9 + 2 * f  # bias-free conv + BN
    upsample = 2 * (f * 4 * f * 9 + 4 * f + f)  # two x2 stages: conv to 4f with bias, PReLU
    conv_last = f * 3 * 81 + 3
    expected = conv_first + b * block + conv_body + upsample + conv_last
    model = build_model("srresnet", scale=4)
    assert sum(p.numel() for p in model.parameters()) == expected == 1_548_547
    assert len(model.body) == 16 and len(model.upsample) == 6
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2 * 16 + 1
    assert isinstance(model.conv_first, nn.Conv2d) and model.conv_first.kernel_size == (9, 9)
    assert model.conv_last.kernel_size == (9, 9)


@pytest.mark.parametrize("scale", SCALES)
def test_srresnet_upsample_stages(scale):
    model = SRResNet(num_feat=4, num_block=1, scale=scale)
    shuffles = [m.upscale_factor for m in model.upsample if isinstance(m, nn.PixelShuffle)]
    assert shuffles == ([3] if scale == 3 else [2] * int(math.log2(scale)))


@pytest.mark.parametrize("scale", [2, 3])
def test_fold_batchnorm(scale):
    model = tiny("srresnet", scale)
    randomize_bn(model)
    lq = lq_batch()
    with torch.no_grad():
        ref = model(lq)
        folded = fold_batchnorm(model)
        out = folded(lq)
    assert folded is model and model.bn_folded
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.body[0].bn1, nn.Identity) and isinstance(model.bn_body, nn.Identity)
    assert model.conv_body.bias is not None
    assert (out - ref).abs().max() <= 1e-5


def test_fold_batchnorm_discriminator_and_no_bn_models():
    d = Discriminator(num_feat=4).eval()
    randomize_bn(d)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        ref = d(x)
        out = fold_batchnorm(d)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert (out - ref).abs().max() <= 1e-5
    model = tiny("espcn", 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch", list_models())
def test_save_load_round_trip(arch, tmp_path):
    model = tiny(arch, 2)
    randomize_bn(model)
    path = tmp_path / f"{arch}.pt"
    save_weights(model, path, arch=arch, args=TINY[arch], meta={"trained_steps": 7, "precision_ok": ["bf16"]})
    assert not list(tmp_path.glob(".*partial*"))
    file_arch, args, state_dict, meta = load_weights_file(path)
    assert (file_arch, args, meta["trained_steps"]) == (arch, {**TINY[arch], "scale": 2}, 7)

    lq = lq_batch()
    with torch.no_grad():
        ref = model(lq)
        exact = load_model(path, 2, fold_bn=False)
        folded = load_model(path, 2)
        assert torch.equal(exact(lq), ref)
        assert (folded(lq) - ref).abs().max() <= 1e-5
    assert not exact.training and folded.scale == 2 and folded.arch == arch
    assert folded.meta == {"trained_steps": 7, "precision_ok": ["bf16"]}
    assert load_model(path, scale=None).scale == 2  # None: the file's scale
    half = load_model(path, 2, half=True)
    assert all(t.dtype == torch.float16 for t in [*half.parameters(), *half.buffers()])


def test_save_refuses_folded_model(tmp_path):
    model = fold_batchnorm(tiny("srresnet", 2))
    with pytest.raises(ValueError, match="BN-folded"):
        save_weights(model, tmp_path / "x.pt", arch="srresnet", args=TINY["srresnet"])


def test_shipped_names(weights_dir):
    model = tiny("srresnet", 2)
    save_weights(model, weights_dir / "srgan_x2.pt", arch="srresnet", args=TINY["srresnet"])
    assert find_weights("srgan", 2) == weights_dir / "srgan_x2.pt"
    assert find_weights("srgan", 4) is None
    loaded = load_model("srgan", 2)
    assert loaded.arch == "srresnet" and loaded.scale == 2
    with pytest.raises(VsrError, match=r"no weights for srgan x4 \(have: srgan_x2.pt\); pass --weights PATH"):
        load_model("srgan", 4)
    with pytest.raises(VsrError, match="^no weights for srresnet x4; pass --weights PATH or train one with vsr train$"):
        load_model("srresnet", 4)
    # A BasicSR file shipped under an architecture's name needs no arch argument.
    torch.save({"params_ema": model.state_dict()}, weights_dir / "srresnet_x2.pt")
    assert load_model("srresnet", 2).args["num_feat"] == 4


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_always_loads(weights_dir, scale):
    model = load_model("bicubic", scale)
    assert model.scale == scale and model.arch == "bicubic" and model.meta == {}
    assert model(lq_batch()).shape == (2, 3, 7 * scale, 9 * scale)


def test_basicsr_params_ema(tmp_path):
    ema, plain = tiny("srresnet", 4), SRResNet(num_feat=4, num_block=1, scale=4).eval()
    randomize_bn(ema)
    path = tmp_path / "net_g_1000.pth"
    # As BasicSR saves them, with a DDP prefix on one of the two for good measure.
    torch.save({"params": plain.state_dict(), "params_ema": {f"module.{k}": v for k, v in ema.state_dict().items()}},
               path)
    loaded = load_model(path, 4, arch="srresnet", fold_bn=False)
    assert loaded.args == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_block": 1, "scale": 4}
    lq = lq_batch()
    with torch.no_grad():
        assert torch.equal(loaded(lq), ema(lq))
    with pytest.raises(VsrError, match="does not say which model"):
        load_model(path, 4)
    with pytest.raises(VsrError, match=r"are for x4, asked for x2"):
        load_model(path, 2, arch="srresnet")
    # A bare state_dict is accepted the same way.
    torch.save(ema.state_dict(), path)
    assert load_model(path, 4, arch="srresnet").arch == "srresnet"


def test_basicsr_msrresnet_gets_a_hint(tmp_path):
    path = tmp_path / "msrresnet.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(64, 3, 3, 3), "upconv1.weight": torch.zeros(256, 64, 3, 3),
                           "conv_last.weight": torch.zeros(3, 64, 3, 3)}}, path)
    with pytest.raises(VsrError, match="MSRResNet"):
        load_model(path, 4, arch="srresnet")


def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(VsrError) as info:
        load_model(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_load_errors(tmp_path):
    good = tmp_path / "espcn_x2.pt"
    save_weights(tiny("espcn", 2), good, arch="espcn", args=TINY["espcn"])

    assert "no such weights file" in one_line_error(tmp_path / "missing.pt", 2)

    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n" * 10)
    assert "not a PyTorch weights file" in one_line_error(text, 2)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "cannot read weights file" in one_line_error(corrupt, 2)

    for name, obj in {"list.pt": [1, 2], "dict.pt": {"foo": 1}}.items():
        torch.save(obj, tmp_path / name)
        assert "is not a weights file" in one_line_error(tmp_path / name, 2, arch="espcn")

    assert one_line_error(good, 4) == f"weights {good} are for x2, asked for x4"
    assert one_line_error(good, 2, arch="srresnet") == f"weights {good} are for espcn, not srresnet"
    assert "unknown model" in one_line_error(good, 2, arch="vdsr")

    ckpt = torch.load(good, weights_only=True)
    torch.save({**ckpt, "arch": "vdsr"}, tmp_path / "unknown.pt")
    assert "unknown model 'vdsr'" in one_line_error(tmp_path / "unknown.pt", 2)
    torch.save({**ckpt, "args": {**ckpt["args"], "num_feat": 8}}, tmp_path / "wrong_size.pt")
    assert "do not fit espcn" in one_line_error(tmp_path / "wrong_size.pt", 2)
    torch.save({**ckpt, "args": {**ckpt["args"], "num_blocks": 8}}, tmp_path / "wrong_args.pt")
    assert "bad arguments for espcn" in one_line_error(tmp_path / "wrong_args.pt", 2)
    # srresnet weights of one depth in a file that claims another.
    state_dict = SRResNet(num_feat=4, num_block=2, scale=2).state_dict()
    torch.save({"arch": "srresnet", "args": TINY["srresnet"] | {"scale": 2}, "state_dict": state_dict, "meta": {}},
               tmp_path / "deeper.pt")
    assert "unexpected (e.g. body.1." in one_line_error(tmp_path / "deeper.pt", 2)


@pytest.mark.parametrize("crop", [96, 128])
def test_discriminator_shape(crop):
    d = Discriminator(num_feat=4)
    assert d(torch.rand(2, 3, crop, crop)).shape == (2, 1)


def test_discriminator_paper_size():
    d = Discriminator()
    convs = [m for m in d.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2] * 4
    assert d.classifier[1].in_features == 512 * 36 and d.classifier[1].out_features == 1024


def test_count_flops():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    assert count_flops(conv, 10, 12) == 2 * (10 * 12 * 8 * 3 * 9 + 10 * 12 * 3 * 16 * 8)
    assert count_flops(build_model("bicubic"), 10, 12) == 0
    model = build_model("espcn", scale=2)
    per_pixel = 3 * 64 * 25 + 64 * 32 * 9 + 32 * 12 * 9
    assert count_flops(model, 10, 12) == 2 * 10 * 12 * per_pixel
    assert model.training  # probing leaves the mode alone
