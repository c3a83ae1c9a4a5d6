"""Provenance: every video and image vsr writes says what made it (vsr version, model, weights SHA-256, scale,
precision, generative or not), read back here with PyAV and Pillow, and printed by `vsr info`."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_clip
from vsr import provenance
from vsr.cli import cli
from vsr.models import build_model, find_weights, inspect_weights, save_weights


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tiny_weights(path, meta):
    """A tiny random SRResNet x4 saved with ``meta`` (a GAN's or not)."""
    model = build_model("srresnet", scale=4, num_feat=4, num_block=1)
    save_weights(model, path, arch="srresnet", args={"num_feat": 4, "num_block": 1}, meta=meta)
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def container_tags(path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {k.lower(): v for k, v in container.metadata.items()}


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_video_carries_provenance_beside_the_source_tags(tmp_path, suffix):
    clip = make_clip(tmp_path / f"clip{suffix}", tags=True)
    gan = tiny_weights(tmp_path / "tiny_gan.pt", {"phase": "gan", "adv_weight": 1e-3})
    out = tmp_path / f"gan{suffix}"
    result = run("enhance", clip, "--weights", gan, "-o", out, "--device", "cpu", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    tags = container_tags(out)
    assert tags["vsr_model"] == "tiny_gan" and tags["vsr_arch"] == "srresnet"
    assert tags["vsr_generative"] == "yes"
    assert tags["vsr_weights_sha256"] == sha256(gan)
    assert tags["vsr_scale"] == "4" and tags["vsr_precision"] == "fp32"
    assert tags["vsr_version"] == provenance.version()
    assert tags["title"] == "vsr test clip" and tags["comment"] == "made by tests/conftest.py"  # still copied

    out2 = tmp_path / f"espcn{suffix}"
    result = run("enhance", clip, "-m", "espcn", "-o", out2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    tags = container_tags(out2)
    assert tags["vsr_model"] == "espcn" and tags["vsr_generative"] == "no"
    assert tags["vsr_weights_sha256"] == sha256(find_weights("espcn", 4))

    info = run("info", out)
    assert info.exit_code == 0, info.output
    assert "model: tiny_gan (srresnet), x4, fp32" in info.output
    assert sha256(gan) in info.output and "generative: yes" in info.output
    assert "video: 256x192" in info.output and "audio aac" in info.output


def test_resumed_run_carries_provenance(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    out = tmp_path / "out.mp4"
    result = run("enhance", clip, "-m", "bicubic", "-o", out, "--resume", "--segment-frames", "5")
    assert result.exit_code == 0, result.output
    tags = container_tags(out)
    assert tags["vsr_model"] == "bicubic" and tags["vsr_generative"] == "no" and tags["vsr_weights_sha256"] == "none"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_image_carries_provenance(tmp_path, suffix):
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8)).save(src)
    gan = tiny_weights(tmp_path / "tiny_gan.pt", {"phase": "gan"})
    plain = tiny_weights(tmp_path / "tiny_mse.pt", {"phase": "mse"})
    for weights, expected in ((gan, "yes"), (plain, "no")):
        out = tmp_path / f"{weights.stem}{suffix}"
        result = run("enhance", src, "--weights", weights, "-o", out, "--device", "cpu")
        assert result.exit_code == 0, result.output
        with Image.open(out) as im:
            assert im.size == (128, 96)
            if suffix == ".png":
                keys = {k: v for k, v in im.text.items() if k.startswith("vsr_")}
                assert keys["vsr_model"] == weights.stem and keys["vsr_generative"] == expected
                assert keys["vsr_weights_sha256"] == sha256(weights)
            else:
                description = im.getexif()[0x010E]
                assert f"vsr_generative={expected}" in description and sha256(weights) in description
                assert provenance.parse_xmp(im.info["xmp"])["generative"] == expected
        info = run("info", out)
        assert info.exit_code == 0, info.output
        assert f"generative: {expected}" in info.output and f"model: {weights.stem} (srresnet)" in info.output


def test_sixteen_bit_png_gets_text_chunks(tmp_path):
    src = tmp_path / "deep.png"
    from vsr.video.stills import write_png16

    write_png16(src, np.random.default_rng(1).integers(0, 65535, (16, 20, 3), np.uint16))
    out = tmp_path / "deep_x4.png"
    result = run("enhance", src, "-m", "bicubic", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.text["vsr_model"] == "bicubic"
    assert "16-bit" in run("info", out).output


def test_generative_from_meta_and_user():
    # The shipped SRGAN files were trained adversarially; the SRResNet ones on pixel error.
    for name, expected in (("srgan", "yes"), ("srgan_real", "yes"), ("srresnet", "no"), ("espcn", "no")):
        path = find_weights(name, 4)
        if path is not None:
            assert provenance.generative(inspect_weights(path)["meta"]) == expected, name
    assert provenance.generative({"source": "spandrel"}) == "unknown"
    assert provenance.generative({"phase": "gan", "generative": "no"}) == "no"  # an explicit key wins


def test_user_says_generative_for_a_file_that_does_not(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    silent = tiny_weights(tmp_path / "silent.pt", {})
    result = run("enhance", clip, "--weights", silent, "-o", tmp_path / "a.mp4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert container_tags(tmp_path / "a.mp4")["vsr_generative"] == "unknown"
    result = run("enhance", clip, "--weights", silent, "-o", tmp_path / "b.mp4", "--generative", "yes")
    assert result.exit_code == 0, result.output
    assert container_tags(tmp_path / "b.mp4")["vsr_generative"] == "yes"


def test_avi_output_says_it_cannot_hold_the_tags(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    result = run("enhance", clip, "-m", "bicubic", "-o", tmp_path / "out.avi")
    assert result.exit_code == 0, result.output
    assert "holds no free-form tags" in result.stderr


def test_info_on_a_plain_file_and_a_missing_one(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", tags=True)
    result = run("info", clip)
    assert result.exit_code == 0, result.output
    assert "made by vsr: no" in result.output and "title=vsr test clip" in result.output
    assert "progressive" in result.output and "SAR 1:1" in result.output
    missing = run("info", tmp_path / "nope.mp4")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ") and "Traceback" not in missing.output
