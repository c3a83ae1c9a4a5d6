"""The estimate before the work: the expected duration during a run (RunClock, in the progress bar) and
`vsr enhance --estimate`, which measures a few seconds and writes nothing. Correctness only, never timings."""

from __future__ import annotations

import re

import numpy as np
from click.testing import CliRunner
from PIL import Image

from conftest import make_clip
from vsr.cli import cli
from vsr.pipeline.estimate import RunClock, format_duration, format_size


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_run_clock_leaves_the_start_up_out():
    clock = FakeClock()
    runs = RunClock(100, clock, settle=8)
    assert runs.per_frame is None and runs.expected_total() is None
    clock.now = 10.0  # the first batch pays for start-up
    runs.update(4)
    assert runs.expected_total() is None
    for _ in range(5):
        clock.now += 4.0  # then 1 s per frame
        runs.update(4)
    assert runs.per_frame == 1.0
    assert runs.expected_total() == 30.0 + 76 * 1.0
    assert RunClock(None, clock).expected_total() is None  # no frame count, no total


def test_run_clock_measures_past_the_encoders_lookahead():
    clock = FakeClock()
    runs = RunClock(400, clock, settle=48)
    for _ in range(12):  # 48 frames go into the encoder's lookahead at the model's pace
        clock.now += 0.4
        runs.update(4)
    assert not runs.settled
    for _ in range(4):  # then the encoder sets the pace
        clock.now += 4.0
        runs.update(4)
    assert runs.settled and runs.per_frame == 1.0 and not runs.ready  # 16 frames past the lookahead: not yet
    for _ in range(6):
        clock.now += 4.0
        runs.update(4)
    assert runs.ready and runs.per_frame == 1.0
    assert runs.expected_total() == clock.now + (400 - 88) * 1.0


def test_formats():
    assert format_duration(7.25) == "7.2 s" and format_duration(125) == "2 min 05 s"
    assert format_duration(3725) == "1 h 02 min" and format_duration(3 * 86400) == "3.0 days"
    assert format_size(812_000) == "812 kB" and format_size(1.4e9) == "1.4 GB"


def test_estimate_writes_nothing_and_counts_the_whole_file(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=50, fps=10)
    before = sorted(tmp_path.iterdir())
    result = run("enhance", clip, "-m", "bicubic", "--estimate")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert re.fullmatch(r"clip\.mp4: about [\d.]+ s for 50 frames \([\d.e-]+ s/frame measured on \d+\), "
                        r"output about [\d.]+ [kM]?B", line), line
    assert sorted(tmp_path.iterdir()) == before
    # An excerpt is estimated for its own frames.
    result = run("enhance", clip, "-m", "bicubic", "--estimate", "--start", "1", "--end", "3")
    assert result.exit_code == 0, result.output
    assert "for 20 frames" in result.stdout


def test_estimate_of_a_folder(tmp_path):
    make_clip(tmp_path / "a.mp4", frames=30, fps=10)
    for name in ("b.png", "c.png"):
        Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(tmp_path / name)
    before = sorted(tmp_path.iterdir())
    result = run("enhance", tmp_path, "-m", "bicubic", "--estimate")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["a.mp4", "b.png", "c.png"]
    assert "for 30 frames" in lines[0] and re.search(r"about [\d.]+ s \(measured\), output \d+ B", lines[2])
    assert lines[3].startswith(f"{tmp_path}: 3 files, about ")
    assert sorted(tmp_path.iterdir()) == before


def test_enhance_prints_the_expected_duration(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    result = run("enhance", clip, "-m", "bicubic", "-b", "2", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 0, result.output
    assert re.search(r"Estimate: the whole run should take about [\d.]+ s", result.stderr), result.stderr
    assert "whole run ~" in result.stderr  # in the bar


def test_timing_counts_the_plan_once():
    from vsr.pipeline.estimate import Timing

    timing = Timing(took=12.0, planned=2.0, frames=10)
    assert timing.per_frame == 1.0 and timing.total(100) == 102.0
