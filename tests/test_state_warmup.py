"""scripts/state_warmup.py on a tiny real clip: the table by frame index and the state's worth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from conftest import make_clip
from vsr import models

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "state_warmup.py"


def test_state_warmup_scores_windows_of_a_clip(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=14, size=(96, 64), audio=False)
    torch.manual_seed(0)
    recurrent = models.build_model("arsrresnet", scale=4, num_feat=8, num_block=1, num_state=4)
    torch.nn.init.normal_(recurrent.conv_temporal.weight, std=0.5)  # a past that changes the output
    models.save_weights(recurrent, tmp_path / "rec.pt", arch="arsrresnet",
                        args={"num_feat": 8, "num_block": 1, "num_state": 4})
    per_frame = models.build_model("srresnet", scale=4, num_feat=8, num_block=1)
    models.save_weights(per_frame, tmp_path / "pf.pt", arch="srresnet", args={"num_feat": 8, "num_block": 1})
    result = subprocess.run([sys.executable, str(SCRIPT), "--recurrent", str(tmp_path / "rec.pt"), "--per-frame",
                             str(tmp_path / "pf.pt"), "--frames", "4", "--runs", "3", "--clip", str(clip)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line[:3] in {f"| {i}" for i in range(4)}]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3] and "3 windows of clip.mp4" in result.stdout
    assert float(rows[0][-1]) == 0.0  # frame 0 has no past: with and without the state are the same model
    assert any(float(r[-1]) != 0.0 for r in rows[1:])  # later frames see the past
