"""Folder runs (vsr.pipeline.folder through `vsr enhance FOLDER`): every file attempted, a line each, a summary, exit 1
when any failed; --skip-existing reruns do only what is missing; --report writes the per-file results."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_clip
from vsr.cli import cli
from vsr.errors import VsrError
from vsr.pipeline import folder


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture
def damaged_folder(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_clip(clips / name, frames=4, size=(32, 24), audio=False)
    data = (clips / "b.mp4").read_bytes()
    (clips / "b.mp4").write_bytes(data[: len(data) // 2])  # cut short: its index (at the end) is gone
    return clips


def test_damaged_file_in_a_folder_does_not_stop_the_others(damaged_folder, tmp_path):
    out, report = tmp_path / "up", tmp_path / "report.json"
    result = run("enhance", damaged_folder, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out,
                 "--report", report)
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.mp4", "c_x2.mp4"]  # nothing half-written for b
    assert frame_count(out / "a_x2.mp4") == frame_count(out / "c_x2.mp4") == 4
    lines = result.stderr.splitlines()
    assert any(line.startswith("[1/3] a.mp4: done -> a_x2.mp4 (4 frames") for line in lines), result.stderr
    assert any(line.startswith("[2/3] b.mp4: failed: not a video file") for line in lines), result.stderr
    assert any(line.startswith("[3/3] c.mp4: done") for line in lines), result.stderr
    assert "Summary: 3 files: 2 done, 0 skipped, 1 failed (b.mp4)" in lines
    assert lines[-1] == "Error: 1 of 3 files failed: b.mp4" and "Traceback" not in result.output
    body = json.loads(report.read_text())
    assert (body["done"], body["skipped"], body["failed"]) == (2, 0, 1)
    entries = {e["input"].rsplit("/", 1)[-1]: e for e in body["files"]}
    assert entries["a.mp4"]["status"] == "done" and entries["a.mp4"]["frames"] == 4
    assert entries["a.mp4"]["output"] == str(out / "a_x2.mp4") and entries["a.mp4"]["model"] == "bicubic"
    assert entries["a.mp4"]["seconds"] > 0
    assert entries["b.mp4"]["status"] == "failed" and "not a video file" in entries["b.mp4"]["reason"]

    # A rerun with --skip-existing does only what is missing: b, once it is repaired.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    make_clip(damaged_folder / "b.mp4", frames=4, size=(32, 24), audio=False)
    again = run("enhance", damaged_folder, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out,
                "--skip-existing", "--report", report)
    assert again.exit_code == 0, again.output
    assert "[1/3] a.mp4: skipped: a_x2.mp4 exists" in again.stderr.splitlines()
    assert "Summary: 3 files: 1 done, 2 skipped, 0 failed" in again.stderr.splitlines()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "b_x2.mp4"} == stamps
    assert frame_count(out / "b_x2.mp4") == 4
    assert [e["status"] for e in json.loads(report.read_text())["files"]] == ["skipped", "done", "skipped"]


def test_rerun_without_skip_existing_names_the_outputs_in_the_way(damaged_folder, tmp_path):
    run("enhance", damaged_folder, "-m", "bicubic", "-s", "2", "--device", "cpu")
    again = run("enhance", damaged_folder, "-m", "bicubic", "-s", "2", "--device", "cpu")
    assert again.exit_code == 1
    assert "Summary: 3 files: 0 done, 0 skipped, 3 failed (a.mp4, b.mp4, c.mp4)" in again.stderr.splitlines()
    assert "[1/3] a.mp4: failed: output file exists" in again.stderr


def test_images_in_a_folder_get_the_image_default(tmp_path):
    from PIL import Image

    from vsr.cli import VIDEO_MODEL

    clips = tmp_path / "mixed"
    clips.mkdir()
    make_clip(clips / "v.mp4", frames=2, size=(24, 16), audio=False)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(clips / "p.png")
    report = tmp_path / "r.json"
    result = run("enhance", clips, "--device", "cpu", "--report", report)
    assert result.exit_code == 0, result.output
    models = {e["input"].rsplit("/", 1)[-1]: e["model"] for e in json.loads(report.read_text())["files"]}
    assert models == {"p.png": "srresnet", "v.mp4": VIDEO_MODEL}
    assert (clips / "p_x4.png").exists() and frame_count(clips / "v_x4.mp4") == 2


def test_single_file_skip_existing_and_report(clip_mp4, tmp_path):
    report = tmp_path / "one.json"
    first = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "--device", "cpu", "--report", report)
    assert first.exit_code == 0, first.output
    assert json.loads(report.read_text())["files"][0]["frames"] == 12
    second = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "--device", "cpu", "--skip-existing")
    assert second.exit_code == 0 and "clip.mp4: skipped: clip_x2.mp4 exists" in second.stderr
    third = run("enhance", clip_mp4, "-m", "bicubic", "-s", "2", "--device", "cpu")  # a single file fails as before
    assert third.exit_code == 1 and third.stderr.splitlines() == [
        f"Error: output file exists: {clip_mp4.with_name('clip_x2.mp4')} (use --overwrite to replace it)"]


def test_run_files_goes_on_after_any_error_but_stops_on_ctrl_c(tmp_path):
    jobs = [(tmp_path / f"{n}.mp4", tmp_path / f"{n}_x2.mp4") for n in "abcd"]

    def run_one(path, out):
        if path.stem == "b":
            raise VsrError("bad\nsecond line")
        if path.stem == "c":
            raise ValueError("a bug")
        if path.stem == "d":
            raise KeyboardInterrupt
        return 7

    report = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        folder.run_files(jobs, run_one, report=report)
    body = json.loads(report.read_text())  # written before the interrupt went on
    assert [(e["status"], e["reason"]) for e in body["files"]] == [("done", None), ("failed", "bad"),
                                                                    ("failed", "ValueError: a bug")]
    results = folder.run_files(jobs[:3], run_one)
    assert folder.summary(results, total=4) == "4 files: 1 done, 0 skipped, 2 failed (b.mp4, c.mp4), 1 not reached"


def test_resume_continues_each_file_of_a_folder(tmp_path, monkeypatch):
    from vsr import video

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(clips / name, frames=12, size=(32, 24), audio=False)
    args = ("enhance", clips, "-m", "bicubic", "-s", "2", "--device", "cpu", "--resume", "--segment-frames", "4",
            "-b", "2")
    real_write, written = video.VideoWriter.write, [0]

    def crash_in_b(self, batch, pts):  # all of a (12 frames), then 8 of b: two of b's segments are finished
        if written[0] + len(pts) > 20:
            raise VsrError("simulated crash")
        written[0] += len(pts)
        return real_write(self, batch, pts)

    with monkeypatch.context() as patch:
        patch.setattr(video.VideoWriter, "write", crash_in_b)
        first = run(*args)
    assert first.exit_code == 1 and "[2/2] b.mp4: failed: simulated crash" in first.stderr, first.output
    assert (clips / "a_x2.mp4").exists() and not (clips / "b_x2.mp4").exists()
    again = run(*args)  # the same command again
    assert again.exit_code == 0, again.output
    lines = again.stderr.splitlines()
    assert "[1/2] a.mp4: skipped: a_x2.mp4 exists" in lines
    assert any("8 reused from an earlier run" in line for line in lines), again.stderr
    assert frame_count(clips / "b_x2.mp4") == 12


def test_under_torchrun_each_rank_goes_on_after_a_damaged_file(damaged_folder, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    for name in ("d.mp4", "e.mp4"):  # rank 1 gets b (damaged) and d: d must still be done
        make_clip(damaged_folder / name, frames=4, size=(32, 24), audio=False)
    out = tmp_path / "up"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "vsr", "enhance", str(damaged_folder), "-m", "bicubic", "-s", "2", "-o", str(out)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.mp4", "c_x2.mp4", "d_x2.mp4", "e_x2.mp4"], done.stderr
    assert "rank 1: b.mp4: failed: not a video file" in done.stderr


def test_skip_existing_and_overwrite_together_are_refused(clip_mp4):
    result = run("enhance", clip_mp4, "-m", "bicubic", "--skip-existing", "--overwrite")
    assert result.exit_code == 1 and result.stderr.splitlines() == [
        "Error: give --overwrite or --skip-existing, not both"]
