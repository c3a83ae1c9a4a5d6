"""Other projects' weights through spandrel: Real-ESRGAN's two released layouts (../shared/data/weights/peers/) run
end to end through `vsr enhance` and match a direct forward of the same network; bad files give one line.

Skipped, loudly, where ../shared is absent.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import one_error_line
from vsr import models, video
from vsr.cli import cli
from vsr.errors import VsrError
from vsr.pipeline import Upscaler
from vsr.precision import Precision, choose_precision

PEERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "peers"
X4PLUS = PEERS / "RealESRGAN_x4plus_from_ncnn.pth"
ANIME = PEERS / "realesr-animevideov3_from_ncnn.pth"
SHIPPED = Path(__file__).resolve().parents[1] / "vsr" / "weights" / "srresnet_x4.pt"


def needs(path: Path) -> Path:
    if not path.is_file():
        warnings.warn(f"{path} missing: foreign weights not tested")
        pytest.skip(f"{path} missing")
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])



def direct_forward(path: Path, frames: np.ndarray) -> np.ndarray:
    """spandrel's own loader and call on uint8 (N, H, W, 3) frames, in fp32: the reference."""
    import spandrel

    net = spandrel.ModelLoader().load_from_file(path).eval()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    with torch.inference_mode():
        y = torch.cat([net(x[i : i + 1]) for i in range(len(x))])
    return y.mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour ramps plus edges and some noise: content where the networks do different things."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x ^ y) * 16 % 256], axis=-1)
    img = img + rng.integers(-20, 21, img.shape)
    return np.ascontiguousarray(img.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("path", [X4PLUS, ANIME], ids=["RealESRGAN_x4plus", "animevideov3"])
def test_arch_and_scale_come_from_the_file(path):
    model = models.load_model(needs(path), scale=None)
    assert isinstance(model, models.ForeignModel)
    assert model.scale == 4
    assert model.arch == ("ESRGAN" if path == X4PLUS else "RealESRGAN Compact")
    assert model.meta["source"] == "spandrel"


@pytest.mark.parametrize("path", [X4PLUS, ANIME], ids=["RealESRGAN_x4plus", "animevideov3"])
def test_pipeline_matches_a_direct_forward(path):
    # RRDB (x4plus) costs ~36 MFLOP per LR pixel: small frames keep this quick on two cores.
    frames = np.stack([picture(12, 20, seed) for seed in range(2)])
    model = models.load_model(needs(path), scale=None)
    ours = Upscaler(model, torch.device("cpu"), Precision("fp32", "test"))(torch.from_numpy(frames)).numpy()
    reference = direct_forward(path, frames)
    assert ours.shape == reference.shape == (2, 48, 80, 3)
    assert np.abs(ours.astype(int) - reference).max() <= 1


def test_bf16_stays_close_to_fp32():
    frames = picture(16, 16)[None]
    model = models.load_model(needs(ANIME), scale=None)
    fp32 = Upscaler(model, torch.device("cpu"), Precision("fp32", "test"))(torch.from_numpy(frames)).numpy()
    bf16 = Upscaler(model, torch.device("cpu"), Precision("bf16", "test"))(torch.from_numpy(frames)).numpy()
    assert np.abs(fp32.astype(int) - bf16).mean() < 2.0


@pytest.mark.slow
@pytest.mark.parametrize("path", [X4PLUS, ANIME], ids=["RealESRGAN_x4plus", "animevideov3"])
def test_enhance_runs_peer_weights_end_to_end(clip_factory, tmp_path, path):
    """A clip with audio through `vsr enhance --weights PEER`: every frame, the audio, and the pixels of a direct
    forward (ffv1 in RGB keeps them exactly, so the comparison sees the model and nothing else)."""
    clip = clip_factory("peer.mp4", frames=3, size=(16, 12))
    out = tmp_path / "peer_x4.mkv"
    result = run("enhance", clip, "--weights", needs(path), "-o", out, "--fp32", "-c", "ffv1", "--pix-fmt", "bgr0",
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "x4 on cpu" in result.stderr and "3/3 frames" in result.stderr
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
    lr = np.concatenate([b.frames for b in video.read_frames(clip, 8)])
    sr = np.concatenate([b.frames for b in video.read_frames(out, 8)])
    assert sr.shape == (3, 48, 64, 3)
    assert np.abs(sr.astype(int) - direct_forward(path, lr)).max() <= 1


def test_tiled_foreign_model_matches_whole_frames():
    """Tiles with overlap give the whole-frame result where the receptive field fits in the padding."""
    model = models.load_model(needs(ANIME), scale=None)
    frames = torch.from_numpy(picture(40, 40)[None])
    whole = Upscaler(model, torch.device("cpu"), Precision("fp32", "test"))(frames).numpy()
    tiled = Upscaler(model, torch.device("cpu"), Precision("fp32", "test"), tile=20, tile_pad=12)(frames).numpy()
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_scale_that_disagrees_is_one_line(clip_mp4):
    one_error_line(run("enhance", clip_mp4, "--weights", needs(ANIME), "-s", "2"), "x4", "-s 2")


def test_unknown_architecture_is_one_line(clip_mp4, tmp_path):
    odd = tmp_path / "mystery.pth"
    torch.save({"params": {"encoder.weird.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}}, odd)
    one_error_line(run("enhance", clip_mp4, "--weights", odd), "does not say which model", "spandrel")
    one_error_line(run("models", "--inspect", odd), "does not say which model")


def test_truncated_file_is_one_line(clip_mp4, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(needs(ANIME).read_bytes()[: 300_000])
    one_error_line(run("enhance", clip_mp4, "--weights", cut), "cut.pth")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("clip")) == ["cut.pth"]


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "x": _Payload()}, evil)
    with pytest.raises(VsrError, match="Python objects"):
        models.load_model(evil, scale=None)


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file

    state = torch.load(needs(ANIME), map_location="cpu", weights_only=True)
    state = state.get("params", state)
    st = tmp_path / "anime.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    a = models.load_model(ANIME, scale=None)
    b = models.load_model(st, scale=None)
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


def test_inspect_says_what_a_file_is():
    result = run("models", "--inspect", needs(X4PLUS))
    assert result.exit_code == 0, result.output
    assert "ESRGAN x4 (spandrel)" in result.output and "23nb" in result.output
    listing = run("models")
    assert "ESRGAN" in listing.output and "SwinIR" in listing.output


def test_own_weights_load_without_spandrel(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` now raises ImportError
    model = models.load_model(SHIPPED, scale=None)
    assert model.arch == "srresnet" and model.scale == 4
    if ANIME.is_file():
        with pytest.raises(VsrError, match="pip install spandrel"):
            models.load_model(ANIME, scale=None)


def test_architectures_without_a_precision_keep_fp32():
    meta = {"unsupported_precisions": ["bf16"]}
    chosen = choose_precision("auto", torch.device("cpu"), meta, cpu_capability="AMX")
    assert chosen.name == "fp32" and "does not run in bf16" in chosen.reason
    with pytest.raises(VsrError, match="bf16"):
        choose_precision("bf16", torch.device("cpu"), meta)


def test_odd_sizes_are_padded_for_the_architecture():
    """A model that needs multiples of its window (SwinIR-style) gets padded input and cropped output."""
    model = models.load_model(needs(ANIME), scale=None)
    model.multiple_of = 8
    calls = []
    model.net.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 13, 10))
    assert calls == [(16, 16)] and tuple(y.shape[-2:]) == (52, 40)
