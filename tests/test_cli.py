"""The command line as a user meets it: one `Error:` line and exit 1 for bad input, never a traceback."""

from __future__ import annotations

import json

import av
import pytest
from click.testing import CliRunner

from vsr.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def assert_one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_enhance_bicubic_writes_default_output(clip_mp4):
    result = run("enhance", clip_mp4, "-s", "2", "-m", "bicubic", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = clip_mp4.with_name("clip_x2.mp4")
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.width == 128
        assert len(container.streams.audio) == 1
    assert "12/12 frames" in result.stderr


def test_missing_file(tmp_path):
    assert_one_error_line(run("enhance", tmp_path / "nope.mp4", "-m", "bicubic"), "nope.mp4")


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    assert_one_error_line(run("enhance", fake, "-m", "bicubic"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mp4"]


def test_output_equal_to_input_is_refused(clip_mp4):
    before = clip_mp4.read_bytes()
    assert_one_error_line(run("enhance", clip_mp4, "-o", clip_mp4, "-m", "bicubic", "-s", "2", "--overwrite"))
    assert clip_mp4.read_bytes() == before


def test_existing_output_needs_overwrite(clip_mp4, tmp_path):
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep me")
    assert_one_error_line(run("enhance", clip_mp4, "-o", out, "-m", "bicubic", "-s", "2"), "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert run("enhance", clip_mp4, "-o", out, "-m", "bicubic", "-s", "2", "--overwrite").exit_code == 0
    assert out.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    "args",
    [["--scale", "5"], ["--crf", "99"], ["--codec", "divx"], ["--batch-size", "0"], ["--precision", "fp8"]],
)
def test_invalid_options(clip_mp4, args):
    # enhance reports bad option values like every other error: one line, exit 1 (not click's usage text + exit 2).
    assert_one_error_line(run("enhance", clip_mp4, "-m", "bicubic", *args), "Invalid value")


def test_model_without_weights_says_so(clip_mp4, tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_WEIGHTS_DIR", str(tmp_path / "empty"))
    assert_one_error_line(run("enhance", clip_mp4, "-m", "srcnn", "-s", "3"), "no weights for srcnn x3")


def test_corrupt_weights_file(clip_mp4, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    assert_one_error_line(run("enhance", clip_mp4, "--weights", bad))


def test_folder_input(tmp_path):
    from conftest import make_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=4)
    make_clip(folder / "b.mkv", frames=4, audio_codec="libopus")
    result = run("enhance", folder, "-m", "bicubic", "-s", "2", "-o", tmp_path / "up")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["a_x2.mp4", "b_x2.mkv"]


def test_models_lists_registry():
    result = run("models")
    assert result.exit_code == 0
    for name in ("srresnet", "espcn", "fsrcnn", "srcnn", "bicubic"):
        assert name in result.output


def test_bench_json():
    result = run("bench", "-m", "espcn", "-s", "2", "--size", "32x24", "--frames", "4", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("decode_fps", "model_fps", "end_to_end_fps", "e2e_over_model", "peak_rss_mb", "precision",
                "conv_tflops", "model_over_conv", "naive_fps", "e2e_over_naive"):
        assert report[key] > 0 if key != "precision" else report[key]


@pytest.fixture
def keep_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_option_sets_torch_threads(keep_torch_threads):
    import torch

    torch.set_num_threads(2)
    result = run("bench", "-m", "espcn", "-s", "2", "--size", "32x24", "--frames", "2", "--device", "cpu",
                 "--no-naive", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threads"] == 1
    assert_one_error_line(run("enhance", "x.mp4", "--threads", "0"), "--threads")


def test_set_cpu_threads_shares_the_cores_among_local_processes(keep_torch_threads):
    import torch

    from vsr.precision import cpu_cores, set_cpu_threads

    assert set_cpu_threads(3) == 3
    assert set_cpu_threads(processes=cpu_cores() + 1) == 1  # never 0
    torch.set_num_threads(2)
    assert set_cpu_threads() == 2  # nothing asked: torch's setting stays


def test_bench_profile_prints_op_shares():
    result = run("bench", "-m", "srresnet", "-s", "2", "--size", "24x16", "--frames", "2", "--device", "cpu",
                 "--profile", "--no-naive")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("model time by op:"))
    shares = dict(part.rsplit(" ", 2)[:2] for part in line.split(": ", 1)[1].split(", "))
    # Shares are timings, so only their form is checked (a busy machine moves them): conv listed, all in 0..100.
    assert "conv" in shares and all(0 <= float(share) <= 100 for share in shares.values())
    assert sum(float(share) for share in shares.values()) <= 100.5
    assert "naive fps" in result.stdout and "model/conv" in result.stdout


def test_bench_weights_file_names_its_own_arch(tmp_path):
    from vsr import models

    path = tmp_path / "fast_x2.pt"
    models.save_weights(models.build_model("espcn", scale=2), path, arch="espcn", args={"scale": 2})
    # No -m: the file's espcn is timed, not checked against the default srresnet.
    result = run("bench", "--weights", path, "-s", "2", "--size", "32x24", "--frames", "2", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights"] == str(path)
    assert_one_error_line(run("bench", "-m", "srresnet", "--weights", path, "-s", "2", "--size", "32x24",
                              "--frames", "2", "--device", "cpu"), "espcn")


def test_enhance_start_end_as_timestamps(clip_mp4, tmp_path):
    out = tmp_path / "cut.mp4"
    result = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out,
                 "--start", "00:00.5", "--end", "0:00:01")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    assert times == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])  # 10 fps clip, [0.5 s, 1 s), starting at 0
    assert "5/5 frames" in result.stderr and "verified" in result.stderr
    kept = tmp_path / "kept.mp4"
    result = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", kept,
                 "--start", "00:00.5", "--end", "0:00:01", "--keep-timestamps")
    assert result.exit_code == 0, result.output
    with av.open(str(kept)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    assert times == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])


def test_enhance_no_audio_no_subtitles(clip_factory, tmp_path):
    clip = clip_factory("subs.mkv", frames=4, audio_codec="libopus", subtitles=["ass"])
    kept, dropped = tmp_path / "kept.mkv", tmp_path / "dropped.mkv"
    for out, flags in ((kept, []), (dropped, ["--no-audio", "--no-subtitles"])):
        result = run("enhance", clip, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out, *flags)
        assert result.exit_code == 0, result.output
    with av.open(str(kept)) as a, av.open(str(dropped)) as b:
        assert (len(a.streams.audio), len(a.streams.subtitles)) == (1, 1)
        assert (len(b.streams.audio), len(b.streams.subtitles)) == (0, 0)


def test_default_model_is_chosen_by_the_footage(tmp_path):
    from vsr.cli import VIDEO_MODEL, default_model

    assert default_model(tmp_path / "cctv.avi", 4) == VIDEO_MODEL == "rsrresnet_real"
    assert default_model(tmp_path / "tapes", 4) == VIDEO_MODEL  # a folder of videos
    assert default_model(tmp_path / "photo.png", 4) == "srresnet"  # images: the bicubic-trained model
    assert default_model(tmp_path / "cctv.avi", 2) == "srresnet"  # no rsrresnet_real_x2 is shipped
