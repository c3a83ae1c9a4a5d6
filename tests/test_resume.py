"""Interruption and resume: Ctrl-C stops cleanly, and a run killed at any point continues with --resume into a file
with the same frames, pts and audio as an uninterrupted run. The target path only ever holds a complete file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import torch
from click.testing import CliRunner
from conftest import make_clip

from vsr import models, video
from vsr.cli import cli
from vsr.errors import VsrError
from vsr.pipeline import EnhanceConfig, Interrupted, Upscaler, enhance_video

REPO = Path(__file__).resolve().parents[1]
STATE = ".out.mp4.vsr-resume"


def stream_summary(path: Path) -> tuple[list[int], list[bytes]]:
    """(video pts in presentation order, audio packet bytes) of a file."""
    with av.open(str(path)) as container:
        pts = sorted(p.pts for p in container.demux(video=0) if p.size)
    with av.open(str(path)) as container:
        audio = [bytes(p) for p in container.demux(audio=0) if p.size]
    return pts, audio


def tiny_weights(path: Path) -> Path:
    """A real (untrained) SRResNet x2 small enough for tests, slow enough that a run takes a moment."""
    torch.manual_seed(0)
    args = {"scale": 2, "num_feat": 8, "num_block": 1}
    models.save_weights(models.build_model("srresnet", **args), path, arch="srresnet", args=args)
    return path


LONG_FRAMES = 400


def finished_segments(state: Path) -> list[dict]:
    try:
        return json.loads((state / "manifest.json").read_text())["segments"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"vsr exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _as_from_a_terminal() -> None:
    # A test run started in the background by a non-interactive shell (`pytest &`) ignores SIGINT, and children
    # inherit that; a `vsr` typed at a terminal does not ignore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def vsr_process(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vsr", "enhance", *map(str, args)], cwd=REPO,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=_as_from_a_terminal)


@pytest.fixture
def long_clip(tmp_path) -> Path:
    # Long enough (a few seconds on an idle machine) that a signal sent after the first segment or temp file
    # lands mid-run, not after the run has already finished.
    return make_clip(tmp_path / "clip.mp4", frames=LONG_FRAMES)


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path, long_clip):
    weights = tiny_weights(tmp_path / "sr.pt")
    out = tmp_path / "out.mp4"
    args = [long_clip, "--weights", weights, "-s", "2", "--device", "cpu", "--fp32", "-b", "1", "--preset",
            "ultrafast", "-o", out, "--resume", "--segment-frames", "4"]
    proc = vsr_process(*args)
    state = tmp_path / STATE
    # A segment counts once the manifest lists it (written just after the segment file is renamed into place).
    wait_for(lambda: bool(finished_segments(state)), proc, "the first finished segment")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not out.exists(), "a killed run left a file at the target path"
    done = json.loads((state / "manifest.json").read_text())["segments"]
    assert 1 <= len(done) < 8 and all(seg["frames"] == 4 for seg in done)

    upscaled = []
    real_call = Upscaler.__call__

    def counting_call(self, frames):
        upscaled.append(len(frames))
        return real_call(self, frames)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Upscaler, "__call__", counting_call)
        result = CliRunner().invoke(cli, ["enhance", *map(str, args)])
    assert result.exit_code == 0, result.output
    assert f"{4 * len(done)} reused from an earlier run" in result.stderr
    # Only frames after the finished segments went through the model again (the one unfinished segment included).
    assert sum(upscaled) == LONG_FRAMES - 4 * len(done)
    assert not state.exists()

    reference = tmp_path / "reference.mp4"
    enhance_video(long_clip, reference, models.load_model(str(weights), scale=2),
                  EnhanceConfig(device="cpu", precision="fp32", batch_size=4, preset="ultrafast"))
    resumed_pts, resumed_audio = stream_summary(out)
    reference_pts, reference_audio = stream_summary(reference)
    assert len(resumed_pts) == len(reference_pts) == LONG_FRAMES
    assert resumed_pts == reference_pts
    assert resumed_audio == reference_audio != []


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_ctrl_c_stops_cleanly_with_one_line(tmp_path, long_clip, resume):
    out = tmp_path / "out.mp4"
    extra = ["--resume", "--segment-frames", "4"] if resume else []
    proc = vsr_process(long_clip, "--weights", tiny_weights(tmp_path / "sr.pt"), "-s", "2", "--device", "cpu",
                       "--fp32", "-b", "1", "-o", out, *extra)
    if resume:
        wait_for(lambda: any((tmp_path / STATE).glob("seg-*.mp4")), proc, "the first segment")
    else:
        wait_for(lambda: any(tmp_path.glob(".out.mp4.partial-*")), proc, "the output's temp file")
        time.sleep(0.3)  # into the frame loop
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("Error: ")] == lines[-1:], stderr
    assert "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".out.mp4.partial-*"))
    if resume:
        assert lines[-1].startswith("Error: interrupted; ") and "rerun with --resume" in lines[-1]
        left = sorted(p.name for p in (tmp_path / STATE).iterdir())
        assert "manifest.json" in left and not [name for name in left if "partial" in name]
    else:
        assert lines[-1] == "Error: interrupted; no output was written"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "sr.pt"]


# --- in process: a failure at a chosen point, then resume ---------------------------------------------------------

CFG = dict(device="cpu", precision="fp32", batch_size=3, preset="ultrafast", resume=True, segment_frames=4)


def fail_after_frames(monkeypatch, frames: int, exc: BaseException) -> None:
    """Makes the writers raise ``exc`` when a write would take the run past ``frames`` frames.

    At the writer, not the model: writes happen in order, so exactly ``frames // 4`` segments are finished then.
    """
    real_write, written = video.VideoWriter.write, [0]

    def write(self, batch, pts):
        if written[0] + len(pts) > frames:
            raise exc
        written[0] += len(pts)
        return real_write(self, batch, pts)

    monkeypatch.setattr(video.VideoWriter, "write", write)


def test_failure_keeps_finished_segments_and_resume_completes(tmp_path, clip_mp4, monkeypatch):
    net, out = models.load_model("bicubic", scale=2), tmp_path / "out.mp4"
    with monkeypatch.context() as patch:
        fail_after_frames(patch, 9, VsrError("simulated crash"))
        with pytest.raises(VsrError, match="simulated crash"):
            enhance_video(clip_mp4, out, net, EnhanceConfig(**CFG))
    assert not out.exists()
    manifest = json.loads((tmp_path / STATE / "manifest.json").read_text())
    assert [(s["frames"], s["first_pts"] < s["last_pts"]) for s in manifest["segments"]] == [(4, True), (4, True)]
    result = enhance_video(clip_mp4, out, net, EnhanceConfig(**CFG))
    assert result.reused_frames == 8 and result.frames_in == result.frames_out == 12 and result.verified
    assert stream_summary(out) == stream_summary(enhance_video(
        clip_mp4, tmp_path / "plain.mp4", net, EnhanceConfig(**{**CFG, "resume": False})).output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4", "plain.mp4"]


def test_interrupted_during_join_resumes_without_decoding(tmp_path, clip_mp4, monkeypatch):
    net, out = models.load_model("bicubic", scale=2), tmp_path / "out.mp4"
    with monkeypatch.context() as patch:
        patch.setattr(video, "join_segments", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(Interrupted, match="3 finished segment"):
            enhance_video(clip_mp4, out, net, EnhanceConfig(**CFG))
    assert json.loads((tmp_path / STATE / "manifest.json").read_text())["finished"] is True
    with monkeypatch.context() as patch:
        patch.setattr(video, "read_frames", lambda *a, **k: pytest.fail("all frames were done: nothing to decode"))
        result = enhance_video(clip_mp4, out, net, EnhanceConfig(**CFG))
    assert result.frames_out == 12 and result.reused_frames == 12
    assert stream_summary(out)[0] == stream_summary(clip_mp4)[0]


def test_ctrl_c_in_process_stops_threads_and_removes_temp(tmp_path, clip_mp4):
    before = threading.active_count()

    def progress(n):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="no output was written"):
        enhance_video(clip_mp4, tmp_path / "out.mp4", models.load_model("bicubic", scale=2),
                      EnhanceConfig(device="cpu", batch_size=2), progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


@pytest.mark.parametrize("change", ["crf", "model", "input"])
def test_resume_refuses_a_different_job(tmp_path, clip_mp4, monkeypatch, change):
    net, out = models.load_model("bicubic", scale=2), tmp_path / "out.mp4"
    with monkeypatch.context() as patch:
        fail_after_frames(patch, 9, VsrError("simulated crash"))
        with pytest.raises(VsrError):
            enhance_video(clip_mp4, out, net, EnhanceConfig(**CFG))
    state = sorted((tmp_path / STATE).iterdir())
    cfg = EnhanceConfig(**CFG)
    if change == "crf":
        cfg.crf, fragment = 30, "was made with crf = default, this run has 30"
    elif change == "model":
        torch.manual_seed(1)
        net, fragment = models.fold_batchnorm(models.build_model("espcn", scale=2).eval()), "another model"
    else:
        os.utime(clip_mp4, ns=(0, 0))
        fragment = "changed since the resume state"
    with pytest.raises(VsrError, match=fragment) as refused:
        enhance_video(clip_mp4, out, net, cfg)
    assert "delete that folder to start over" in str(refused.value) and "\n" not in str(refused.value)
    assert sorted((tmp_path / STATE).iterdir()) == state and not out.exists()


def test_resume_with_an_existing_target_needs_overwrite_before_any_work(tmp_path, clip_mp4):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["enhance", str(clip_mp4), "-m", "bicubic", "-s", "2", "--device", "cpu", "-o",
                                      str(out), "--resume"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        f"Error: output file exists: {out} (use --overwrite to replace it)"]
    assert out.read_bytes() == b"keep me" and not (tmp_path / STATE).exists()


def test_every_sink_has_the_frame_sink_interface(tmp_path, clip_mp4):
    # enhance_video talks to a sink only through FrameSink; each kind has every member, none a class-level default.
    import inspect
    from fractions import Fraction

    from vsr.pipeline.distributed import SegmentPlan, WindowSink
    from vsr.pipeline.resume import ResumeState
    from vsr.pipeline.sinks import FrameSink, SegmentSink, TargetSink

    writer = video.VideoWriter(tmp_path / "out.mp4", width=32, height=32, time_base=Fraction(1, 25), fps=Fraction(25))
    state = ResumeState(tmp_path / "segmented.mp4", {"input": {}, "model": {}, "settings": {}}, ".mp4")
    index = video.index_video(clip_mp4)
    plan = SegmentPlan({}, index, (2, 6), 2, [0, 1], 0)

    def open_writer(path):
        return writer

    sinks = [TargetSink(writer, index, (0, 12)),
             SegmentSink(state, 2, open_writer, lambda *_: None, index, (0, 12), lambda path: None),
             WindowSink(plan, 1, 2, tmp_path, ".mp4", open_writer)]
    members = [name for name in dir(FrameSink) if not name.startswith("_")]
    try:
        for sink in sinks:
            assert isinstance(sink, FrameSink), type(sink).__name__
            for name in members:
                static = inspect.getattr_static(type(sink), name, None)
                assert static is None or callable(static) or isinstance(static, property), f"{type(sink)}.{name}"
        assert [(s.reused, s.window, s.finished) for s in sinks] == [
            (0, (0, 12), False), (0, (0, 12), False), (0, (4, 6), False)]
    finally:
        writer.abort()
        state.remove()
