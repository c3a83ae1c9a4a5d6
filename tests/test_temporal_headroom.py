"""scripts/temporal_headroom.py: which pixels have no other view in the past, and the table on a tiny real clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script, make_clip

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "temporal_headroom.py"


@pytest.fixture(scope="module")
def headroom():
    return load_script("temporal_headroom")


def _square_clip(frames: int = 5, size: int = 32) -> np.ndarray:
    """A still textured background with a bright 6x6 square moving 3 px right per frame, (N, size, size, 3)."""
    y, x = np.mgrid[0:size, 0:size]
    background = (100 + 40 * np.sin(x / 3) * np.cos(y / 4)).astype(np.uint8)
    clip = np.repeat(np.repeat(background[None, ..., None], frames, 0), 3, -1)
    for t in range(frames):
        clip[t, 10:16, 3 + 3 * t : 9 + 3 * t] = 250
    return clip


def test_still_means_unchanged_in_every_frame_so_far(headroom):
    clip = _square_clip()
    still = headroom.still_masks(clip, lead=2, tau=2.0)  # scored frames 2, 3, 4
    assert still.shape == (3, 32, 32)
    assert still[:, 25:, :].all()  # rows the square never touched (nor their neighbours)
    assert not still[0, 10:16, 3:15].any()  # where the square is or was, and one pixel around
    assert not still[0, 9, 5] and not still[0, 16, 5]
    assert still[0, 10:16, 25:].all() and not still[2, 10:16, 14:21].any()  # not reached yet / reached by frame 4
    averaged = headroom.averaged_input(clip, 2, still)
    assert (averaged[still] == clip[2:][still]).all()  # still pixels: the mean of equal values
    assert (averaged[~still] == clip[2:][~still]).all()  # the rest: the frame itself
    sizes = headroom.motion_sizes(clip, lead=2, radius=4)
    assert sizes.shape == (3, 32, 32) and np.median(sizes[:, 11:15, 11:14]) == pytest.approx(3, abs=0.5)


def test_table_on_a_tiny_clip(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(96, 64), audio=False)
    result = subprocess.run([sys.executable, str(SCRIPT), "--clip", str(clip), "--chains", "h264_crf28", "clean_x4",
                             "--tau", "2", "8", "--frames", "4", "--lead-in", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| h264") or
            line.startswith("| clean")]
    assert [(r[0].strip(), r[2].strip()) for r in rows] == [("h264_crf28", "2"), ("h264_crf28", "8"),
                                                            ("clean_x4", "2"), ("clean_x4", "8")]
    for row in rows:
        assert 0 <= float(row[3].strip(" %")) <= 100 and 0 <= float(row[4].strip(" %")) <= 100
        assert float(row[5]) > 20  # the per-frame model's PSNR
