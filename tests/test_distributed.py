"""`vsr enhance` under torchrun (2 CPU processes on gloo): one video's segments shared out gives the same file as a
single-process --resume run; a folder is shared out by file; a killed rank's segments are redone on a rerun; a
second run on the same output refuses. Every run is a real `python -m torch.distributed.run` subprocess.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from conftest import make_clip

from vsr import models

REPO = Path(__file__).resolve().parents[1]


def torchrun_args(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vsr",
            "enhance", *map(str, args)]


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)


def single(*args) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "vsr", "enhance", *map(str, args)])


def contents(path: Path) -> tuple[list[int], list[np.ndarray], list[bytes]]:
    """(video pts in display order, decoded frames, audio packets) of a file."""
    with av.open(str(path)) as container:
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [bytes(p) for p in container.demux(audio=0) if p.size]
    frames.sort(key=lambda item: item[0])
    return [p for p, _ in frames], [f for _, f in frames], audio


def assert_same(path: Path, reference: Path) -> None:
    pts, frames, audio = contents(path)
    ref_pts, ref_frames, ref_audio = contents(reference)
    assert pts == ref_pts
    assert len(frames) == len(ref_frames) and all(np.array_equal(a, b) for a, b in zip(frames, ref_frames))
    assert audio == ref_audio != []


def test_two_ranks_give_the_single_process_resume_result(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=45, vfr=True)  # uneven pts, with audio
    common = [clip, "-m", "bicubic", "-s", "2", "--preset", "ultrafast", "--segment-frames", "7"]
    reference = tmp_path / "single.mp4"
    done = single(*common, "--resume", "-o", reference)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "dist.mp4"
    done = run(torchrun_args(*common, "-o", out))
    assert done.returncode == 0, done.stderr
    assert "45/45 frames" in done.stderr and "over 2 ranks" in done.stderr
    assert done.stderr.count("enhance:") >= 1 and "7 segments, 7 to do" in done.stderr
    assert not (tmp_path / ".dist.mp4.vsr-resume").exists()
    assert_same(out, reference)


def test_a_folder_is_shared_out_by_file(tmp_path):
    folder = tmp_path / "tapes"
    folder.mkdir()
    lengths = {"a.mp4": 9, "b.mp4": 14, "c.mp4": 6}
    for name, frames in lengths.items():
        make_clip(folder / name, frames=frames)
    out = tmp_path / "out"
    done = run(torchrun_args(folder, "-m", "bicubic", "-s", "2", "--preset", "ultrafast", "-o", out))
    assert done.returncode == 0, done.stderr
    for name, frames in lengths.items():
        pts, _, audio = contents(out / name.replace(".mp4", "_x2.mp4"))
        source_pts, _, source_audio = contents(folder / name)
        assert len(pts) == frames and pts == source_pts and audio == source_audio
    # rank 0 took a and c, rank 1 took b: each file's summary appears once
    assert sum(f"{out / name.replace('.mp4', '_x2.mp4')}:" in done.stderr for name in lengths) == 3


def tiny_weights(path: Path) -> Path:
    """A real (untrained) SRResNet x2: slow enough on CPU that a rank can be killed mid-run."""
    torch.manual_seed(0)
    args = {"scale": 2, "num_feat": 8, "num_block": 1}
    models.save_weights(models.build_model("srresnet", **args), path, arch="srresnet", args=args)
    return path


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_a_killed_rank_is_reported_and_a_rerun_finishes_only_what_is_left(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=160)
    weights = tiny_weights(tmp_path / "sr.pt")
    common = [clip, "--weights", weights, "-s", "2", "--fp32", "-b", "1", "--preset", "ultrafast",
              "--segment-frames", "4"]
    out = tmp_path / "out.mp4"
    state = tmp_path / ".out.mp4.vsr-resume"
    proc = subprocess.Popen(torchrun_args(*common, "-o", out), cwd=REPO, env=environment(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while not list(state.glob("seg-*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read()
    workers = children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not out.exists()
    assert "segments left" in stderr  # rank 0 names what is left
    kept = len(list(state.glob("seg-*.mp4")))
    assert 1 <= kept < 40

    done = run(torchrun_args(*common, "-o", out))
    assert done.returncode == 0, done.stderr
    assert "reused from an earlier run" in done.stderr
    reference = tmp_path / "single.mp4"
    done = single(*common, "--resume", "-o", reference)
    assert done.returncode == 0, done.stderr
    assert_same(out, reference)


def test_a_second_run_on_the_same_output_refuses_in_one_line(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    out = tmp_path / "out.mp4"
    state = tmp_path / ".out.mp4.vsr-resume"
    state.mkdir()
    with open(state / "lock", "w") as lock:  # as a running vsr holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = run(torchrun_args(clip, "-m", "bicubic", "-s", "2", "-o", out))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "another vsr is working on" in errors[0], done.stderr
    # torchrun's own agent prints a ChildFailedError report; no traceback comes from vsr itself
    assert f'{REPO / "vsr"}' not in done.stderr
    assert not out.exists()
