"""Output size and encoder control: --outscale, --width/--height (resampled after the model, on the device) and
-e/--encoder-opt KEY=VALUE (checked before any work)."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import one_error_line
from vsr import video
from vsr.cli import cli
from vsr.errors import VsrError
from vsr.models import Bicubic
from vsr.pipeline import Upscaler, output_size, resize_frames
from vsr.precision import Precision


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])



def video_size(path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames


def test_output_size_rules():
    assert output_size(64, 48, 4) == (256, 192)
    assert output_size(64, 48, 4, outscale=3) == (192, 144)
    assert output_size(64, 48, 4, outscale=3.5) == (224, 168)
    assert output_size(64, 48, 4, out_width=1000) == (1000, 750)  # the aspect ratio is kept
    assert output_size(64, 48, 4, out_height=100) == (133, 100)
    assert output_size(64, 48, 4, out_width=100, out_height=10) == (100, 10)
    with pytest.raises(VsrError, match="not both"):
        output_size(64, 48, 4, outscale=2, out_width=10)
    with pytest.raises(VsrError, match="1 or more"):
        output_size(64, 48, 4, outscale=0.5)


def test_resize_frames_is_antialiased_bicubic_on_the_device():
    x = torch.rand(2, 3, 16, 20)
    y = resize_frames(x, 15, 12)
    assert y.shape == (2, 3, 12, 15) and y.dtype == x.dtype
    assert resize_frames(x, 20, 16) is x
    # A flat picture stays flat (no ringing where there is nothing to ring on).
    flat = torch.full((1, 3, 8, 8), 0.25, dtype=torch.bfloat16)
    assert torch.allclose(resize_frames(flat, 24, 24).float(), torch.tensor(0.25), atol=1e-3)


def test_upscaler_resamples_the_model_output():
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 8, 10, 3), dtype=np.uint8))
    up = Upscaler(Bicubic(scale=4), torch.device("cpu"), Precision("fp32", "test"), out_size=(30, 24))
    out = up(frames)
    assert out.shape == (1, 24, 30, 3) and out.dtype == torch.uint8


def test_outscale_3_with_a_x4_model(clip_mp4):
    result = run("enhance", clip_mp4, "-m", "bicubic", "-s", "4", "--outscale", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = clip_mp4.with_name("clip_x3.mp4")
    assert video_size(out) == (192, 144, 12)
    assert "-> 192x144" in result.stderr


def test_width_keeps_the_aspect_ratio(clip_mp4, tmp_path):
    out = tmp_path / "wide.mp4"
    result = run("enhance", clip_mp4, "-m", "bicubic", "-s", "4", "--width", "1000", "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert video_size(out) == (1000, 750, 12)


def test_outscale_and_width_together_is_one_line(clip_mp4):
    one_error_line(run("enhance", clip_mp4, "-m", "bicubic", "--outscale", "3", "--width", "100"), "not both")
    one_error_line(run("enhance", clip_mp4, "-m", "bicubic", "--outscale", "0.5"), "outscale")


def _x264_settings(path) -> str:
    """The settings string x264 writes into its first packet (an SEI message): what the encoder really used."""
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            data = bytes(packet)
            start = data.find(b"x264 - core")
            if start >= 0:
                return data[start : data.find(b"\x00", start)].decode(errors="replace")
    return ""


def test_encoder_options_reach_the_encoder(clip_mp4, tmp_path):
    out = tmp_path / "crf30.mp4"
    result = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "-e", "crf=30", "-e", "x264-params=keyint=5",
                 "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    settings = _x264_settings(out)
    assert "crf=30.0" in settings and "keyint=5" in settings, settings


def test_bad_encoder_options_fail_before_any_work(clip_mp4, tmp_path):
    out = tmp_path / "never.mp4"
    # The weights file does not exist either: the encoder options are refused first, before any model is loaded.
    one_error_line(run("enhance", clip_mp4, "--weights", tmp_path / "none.pt", "-e", "bogus=1", "-o", out),
                   "bogus")
    one_error_line(run("enhance", clip_mp4, "-m", "bicubic", "-e", "preset=warp9", "-o", out), "preset=warp9")
    one_error_line(run("enhance", clip_mp4, "-m", "bicubic", "-e", "crf", "-o", out), "KEY=VALUE")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_x265_params_keep_x265_quiet(clip_mp4, tmp_path):
    out = tmp_path / "hevc.mp4"
    # A real process: x265 writes to file descriptor 2 itself, which CliRunner does not see.
    proc = subprocess.run([sys.executable, "-m", "vsr", "enhance", str(clip_mp4), "-m", "bicubic", "-s", "2", "-c",
                           "libx265", "-e", "x265-params=aq-mode=3", "-o", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "x265 [info]" not in proc.stderr
    assert video.user_encoder_options("libx265", {"x265-params": "aq-mode=3"}) == {
        "x265-params": "log-level=error:aq-mode=3"}


def test_check_encoder_options_names_the_unknown_key():
    video.check_encoder_options("libx264", {"tune": "film", "crf": "20"})
    with pytest.raises(VsrError, match="no option bogus"):
        video.check_encoder_options("libx264", {"bogus": "1"})
