"""scripts/footage_benchmark.py on a tiny real clip: chains, scores, the peers' loaders, the table and the grid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_clip
from vsr import data, metrics, models

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "footage_benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("footage_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    result = bench.run_benchmark([clip], chosen, frames=3, crop=(64, 48), seed=1, precision="fp32", log=lambda _: 0)
    assert set(result["scores"]) == {"bicubic", "tiny"} and list(result["chains"]) == list(bench.CHAINS)
    for per_chain in result["scores"].values():
        for s in per_chain.values():
            assert np.isfinite(s["psnr"]) and 0 < s["ssim"] <= 1 and s["flicker"] >= 0
    # The frames are the clip's held-out end (its last 20 %: frames 16-18 of 20), centre-cropped to 64x48.
    hr = bench.held_out_frames(clip, 3, (64, 48))
    assert hr.shape == (3, 48, 64, 3)
    # The bicubic row is the protocol's bicubic on the chain's LR, which is seeded: recomputed here, it agrees.
    index = list(bench.CHAINS).index("h264_crf28")
    lr = bench.chain("h264_crf28").degrade_clip(hr, 4, np.random.default_rng([1, index, 0]))
    expected = np.mean([metrics.psnr_ssim_y(data.bicubic_upscale(f, 4), h, 4)[0] for f, h in zip(lr, hr)])
    assert result["scores"]["bicubic"]["h264_crf28"]["psnr"] == pytest.approx(expected, abs=1e-6)
    # Harsher chains lose more: CRF 33 below CRF 23 for bicubic.
    assert result["scores"]["bicubic"]["h264_crf33"]["psnr"] < result["scores"]["bicubic"]["h264_crf23"]["psnr"]
    table = bench.markdown_table(result)
    assert table.count("\n") == 3 and "| tiny |" in table and "**" in table
    bench.picture_grid(result, tmp_path / "grid.png", side=32)
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (32 * 4, 32 + 14)  # LR, bicubic, tiny, original; one clip
