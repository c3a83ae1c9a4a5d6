"""Every shipped weights file loads through vsr.load_model and reaches its Set5 bar (issue 5's resolve column).

The bars are Set5 PSNR (Y, border = scale, bicubic LR) that each model must reach; a file without a bar here fails,
so a new weights file cannot ship unscored. Skipped, loudly, where ../shared is absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from vsr import evaluate, models

REPO = Path(__file__).resolve().parent.parent
SET5 = REPO.parent / "shared" / "data" / "benchmarks" / "Set5"
SHIPPED = sorted((REPO / "vsr" / "weights").glob("*.pt"))

# name -> Set5 PSNR it must reach (dB). srgan trades PSNR for texture, so its bar is "clearly above nothing":
# within 1.5 dB of bicubic (the paper's SRGAN is 1 dB above bicubic on Set5).
SET5_BARS = {
    "srresnet_x4": 31.0,
    "srresnet_real_x4": 28.43,  # trained for compressed footage; on clean bicubic LR it must still beat bicubic
    "espcn_x4": 29.9,
    "srresnet_x2": 36.0,
    "srgan_x4": 28.43 - 1.5,
    # A GAN trained to undo blur, noise and blocking that clean bicubic LR does not have: it adds grain there (Set5
    # 26.53 when shipped). Its yardstick is the footage benchmark (vsr/weights/README.md); this bar only catches a
    # broken file: within 2.5 dB of bicubic.
    "srgan_real_x4": 28.43 - 2.5,
    # The recurrent models on single images (no past): their per-frame start, less one residual block.
    "rsrresnet_real_x4": 28.43,
    "rsrresnet_x4": 31.0,
}
# Files that ship below their bar, each with the reason; strict, so reaching the bar turns the mark into a failure
# that asks for it to be removed.
BELOW_BAR: dict[str, str] = {}


def test_weights_were_shipped():
    assert SHIPPED, "vsr/weights/ has no .pt files: a fresh clone would have no model"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_weights_reach_their_set5_bar(path, request):
    if not SET5.is_dir():
        warnings.warn(f"{SET5} missing: shipped weights not scored")
        pytest.skip(f"{SET5} missing")
    assert path.stem in SET5_BARS, f"{path.name} has no Set5 bar in this test"
    if path.stem in BELOW_BAR:
        request.applymarker(pytest.mark.xfail(strict=True, reason=BELOW_BAR[path.stem]))
    model = models.load_model(path, scale=None)
    assert model.meta.get("trained_steps", model.meta.get("step", 0)) > 0
    result = evaluate.evaluate_folder(SET5, model, model.scale, device="cpu", precision="auto")
    assert result["psnr_y"] >= SET5_BARS[path.stem], f"{path.name}: Set5 {result['psnr_y']:.2f} dB"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_weights_say_whether_they_are_generative(path):
    # Provenance tags read this key: a file without it would be tagged by the phase fallback, or "unknown".
    meta = models.load_model(path, scale=None).meta
    assert meta.get("generative") == ("yes" if meta.get("phase") == "gan" else "no"), path.name
