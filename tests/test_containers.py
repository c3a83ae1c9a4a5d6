"""Every frame, every container, every time: the frame index and the windows read from it, over MP4, MKV, MPEG-TS
(H.264 and MPEG-2), MPEG-PS, AVI, raw .h264 and raw .m2v, all with B-frames and GOPs that segment bounds cut
through, x {a run killed with SIGKILL during --resume then rerun, a --start/--end excerpt, a 2-rank torchrun}: the
output holds exactly the source's frames for the range (count and pts). Plus: an output missing a frame fails the
check and is not renamed into place, and a recurrent model's warm-up frames go through the model but not into the
output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import matrix_runs
import pytest
from conftest import clip_frame, enhance_until_crash

from vsr import models, video
from vsr.errors import VsrError
from vsr.pipeline import EnhanceConfig, Upscaler, enhance_video

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FRAMES, RATE, SIZE = 40, 25, (64, 48)
# name: (muxer, video encoder, audio encoder); GOP 12 with 2 B-frames, so segments of 5 and 7 start mid-GOP.
SOURCES = {
    "clip.mp4": (None, "libx264", "aac"),
    "clip.mkv": (None, "libx264", "aac"),
    "h264.ts": ("mpegts", "libx264", "aac"),
    "mpeg2.ts": ("mpegts", "mpeg2video", "mp2"),
    "dvd.mpg": ("vob", "mpeg2video", "mp2"),
    "dvr.avi": ("avi", "libx264", "pcm_s16le"),  # AVI holds no pts: the index comes from decoded timestamps
    "raw.h264": ("h264", "libx264", None),  # no clock at all, no seeking by time: decoded from the start
    "raw.m2v": ("mpeg2video", "mpeg2video", None),
}
NAMES = list(SOURCES)


def make_source(path: Path) -> Path:
    fmt, codec, audio = SOURCES[path.name]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"g": "12", "bf": "2", **({"preset": "veryfast"} if codec == "libx264" else {})}
        sound = container.add_stream(audio, rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(clip_frame(i, *SIZE), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            fmt = sound.codec_context.format.name  # the encoder's own: s16 (packed) for MP2 and PCM, fltp for AAC
            dtype = np.int16 if fmt.startswith("s16") else np.float32
            shape = (2, 1024) if sound.codec_context.format.is_planar else (1, 2048)
            for k in range(FRAMES * 48000 // RATE // 1024):
                tone = np.full(shape, (k % 7) * (100 if dtype == np.int16 else 0.01), dtype)
                chunk = av.AudioFrame.from_ndarray(tone, format=fmt, layout="stereo")
                chunk.sample_rate, chunk.pts, chunk.time_base = 48000, k * 1024, Fraction(1, 48000)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    return {name: make_source(folder / name) for name in NAMES}


def source_times(path: Path, start: float | None = None, end: float | None = None) -> list[Fraction]:
    """Seconds from the stream's start of every frame of a whole-file decode (no seek) within [start, end)."""
    info = video.probe(path)
    pts = [p for batch in video.read_frames(path, 16, info=info) for p in batch.pts]
    origin = (info.start_time or 0) * info.time_base
    times = [p * info.time_base - origin for p in pts]
    return [t for t in times if (start is None or t >= Fraction(start)) and (end is None or t < Fraction(end))]


def output_times(path: Path) -> list[Fraction]:
    """Seconds of every video frame of an output, from its packets (how a player sees it), from its first frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = sorted(p.pts * stream.time_base for p in container.demux(stream) if p.size)
    return times


def assert_same_frames(out: Path, expected: list[Fraction]) -> None:
    """``out`` holds as many frames as ``expected``, at the same times relative to the first (to 1 ms: MKV)."""
    got = output_times(out)
    assert len(got) == len(expected), (len(got), len(expected))
    got_rel = [t - got[0] for t in got]
    want_rel = [t - expected[0] for t in expected]
    assert all(abs(a - b) <= Fraction(1, 1000) for a, b in zip(got_rel, want_rel)), (got_rel, want_rel)


# --- the matrix: each kind of run done for every container at once (tests/matrix_runs.py), then checked per cell ---


@pytest.fixture(scope="module")
def killed(tmp_path_factory, sources) -> Path:
    """A real process running every container with --resume, killed with SIGKILL once each has finished a segment
    and is halfway through the next."""
    folder = tmp_path_factory.mktemp("resume")
    proc = subprocess.Popen([sys.executable, str(HERE / "matrix_runs.py"), "resume", str(folder),
                             *map(str, sources.values())], cwd=REPO, stderr=subprocess.PIPE, text=True)
    states = [_state(matrix_runs.output_path(folder, source, "resumed")) for source in sources.values()]
    deadline = time.monotonic() + 120
    while not all(_segments(state) and list(state.glob(".*partial*")) for state in states):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the runs did not reach their second segment in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return folder


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, sources) -> tuple[Path, dict]:
    """Every container run across 2 torchrun ranks (one job), with a model that warms up on 3 frames."""
    folder = tmp_path_factory.mktemp("ranks")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(HERE / "matrix_runs.py"), "ranks", str(folder), *map(str, sources.values())],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    reports = [json.loads((folder / f"ranks-{rank}.json").read_text()) for rank in (0, 1)]
    return folder, {name: [report[name] for report in reports] for name in reports[0]}


def _state(out: Path) -> Path:
    return out.parent / f".{out.name}.vsr-resume"


def _segments(state: Path) -> list:
    try:
        return json.loads((state / "manifest.json").read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.parametrize("name", NAMES)
def test_sigkill_during_resume_then_rerun_gives_every_frame(killed, sources, name, monkeypatch):
    source = sources[name]
    out = matrix_runs.output_path(killed, source, "resumed")
    state = _state(out)
    assert not out.exists() and [seg["frames"] for seg in _segments(state)] == [5]
    assert (state / "index.json").exists() and list(state.glob(".*partial*"))  # the half-written second segment
    monkeypatch.setattr(video, "index_video", lambda *a, **k: pytest.fail("the kept index was not reused"))
    result = enhance_video(source, out, models.load_model("bicubic", scale=2), matrix_runs.config("resume"))
    assert result.reused_frames == 5 and result.frames_out == FRAMES and result.verified
    assert not state.exists()
    assert_same_frames(out, source_times(source))


@pytest.mark.parametrize("name", NAMES)
def test_excerpt_holds_every_frame_of_the_range(tmp_path, sources, name):
    source = sources[name]
    out = matrix_runs.output_path(tmp_path, source, "cut")
    # 0.5 s and 1.3 s fall inside GOPs (a keyframe every 0.48 s), mid B-frame run.
    result = enhance_video(source, out, models.load_model("bicubic", scale=2),
                           EnhanceConfig(device="cpu", batch_size=3, preset="ultrafast", start=0.5, end=1.3))
    expected = source_times(source, 0.5, 1.3)
    assert result.frames_out == len(expected) == 20
    assert_same_frames(out, expected)
    if out.suffix != ".mpg":  # (the MPEG-PS muxer starts every stream after its preload, as FFmpeg's does)
        assert output_times(out)[0] == 0  # an excerpt starts at 0, as ffmpeg -ss writes it


@pytest.mark.parametrize("name", NAMES)
def test_two_torchrun_ranks_give_every_frame(ranked, sources, name):
    folder, reports = ranked
    source = sources[name]
    assert [report["error"] for report in reports[name]] == [None, None]
    # 6 segments of 7 frames: rank 1 starts at frame 21, with frames 18-20 through the model first to warm it.
    assert [report["model_frames"] for report in reports[name]] == [21, 19 + 3]
    assert_same_frames(matrix_runs.output_path(folder, source, "ranks"), source_times(source))


# --- the index and the check --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_index_lists_the_frames_of_a_whole_decode_and_every_window_reads_exactly(sources, name):
    source = sources[name]
    info = video.probe(source)
    index = video.index_video(source, info)
    whole = [p for batch in video.read_frames(source, 16, info=info) for p in batch.pts]
    assert index.times == whole and len(whole) == FRAMES
    assert index.source == ("decode" if name.endswith(".avi") else "packets")
    assert index.seekable == (not name.startswith("raw") and not name.endswith(".avi"))
    for first in range(0, FRAMES, 3):
        window = (first, min(first + 6, FRAMES))
        got = [p for batch in video.read_frames(source, 4, info=info, index=index, window=window) for p in batch.pts]
        assert got == whole[window[0] : window[1]], window


def test_a_late_seek_is_caught_and_redone_from_further_back(sources, monkeypatch):
    """The demuxer landing after the keyframe (as MPEG-TS does) loses the window's first frames: the reader sees the
    first frame it keeps is not the wanted one and goes back further."""
    source = sources["mpeg2.ts"]
    info = video.probe(source)  # before the patch: the probe seeks too, to sample frames across the file
    index = video.index_video(source, info)
    seeks = []
    real_seek = av.container.InputContainer.seek

    def late_seek(self, offset, **kwargs):
        seeks.append(offset)
        # The first try lands a whole GOP late.
        return real_seek(self, offset + (int(12 / index.input_time_base / RATE) if len(seeks) == 1 else 0), **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", late_seek)
    got = [p for batch in video.read_frames(source, 4, info=info, index=index, window=(20, 26)) for p in batch.pts]
    assert got == index.times[20:26] and len(seeks) >= 2 and seeks[1] < seeks[0]


def test_an_output_missing_a_frame_fails_the_check_and_is_not_renamed(tmp_path, sources, monkeypatch):
    """The decode giving one frame too few (as a late seek did) is consistent with what was written: only the check
    against the source's index, read back from the output, sees it."""
    source, out = sources["h264.ts"], tmp_path / "cut.ts"
    real_read = video.read_frames

    def losing_the_first_frame(*args, **kwargs):
        for i, batch in enumerate(real_read(*args, **kwargs)):
            yield batch if i else video.FrameBatch(batch.frames[1:], batch.pts[1:], batch.time_base)

    monkeypatch.setattr(video, "read_frames", losing_the_first_frame)
    with pytest.raises(VsrError, match=r"output check failed: .*cut.ts lacks frame 1 of 20"):
        enhance_video(source, out, models.load_model("bicubic", scale=2),
                      EnhanceConfig(device="cpu", batch_size=3, preset="ultrafast", start=0.5, end=1.3))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_check_times_names_the_first_missing_or_extra_frame(tmp_path, sources):
    source = sources["clip.mkv"]
    index = video.index_video(source)
    video.check_times(source, index.times, index.time_base)
    with pytest.raises(VsrError, match=r"lacks frame 3 of 41 \(at 0\.079s"):
        video.check_times(source, index.times[:2] + [index.times[2] - 1] + index.times[2:], index.time_base)
    with pytest.raises(VsrError, match=r"holds an extra frame at 0\.040s \(after 1 of the 39 frames"):
        video.check_times(source, index.times[:1] + index.times[2:], index.time_base)


# --- warm-up for recurrent models ---------------------------------------------------------------------------------


def test_resume_warms_a_recurrent_model_on_frames_it_drops(tmp_path, sources, monkeypatch):
    source, out = sources["h264.ts"], tmp_path / "out.ts"
    cfg = dict(device="cpu", precision="fp32", batch_size=2, preset="ultrafast", resume=True, segment_frames=5)
    enhance_until_crash(source, out, matrix_runs.WarmNearest(), EnhanceConfig(**cfg))
    resets, upscaled = [], []
    real_call = Upscaler.__call__
    monkeypatch.setattr(Upscaler, "reset_state", lambda self: resets.append(1))
    monkeypatch.setattr(Upscaler, "__call__", lambda self, frames: upscaled.append(len(frames)) or real_call(self,
                                                                                                             frames))
    result = enhance_video(source, out, matrix_runs.WarmNearest(), EnhanceConfig(**cfg))
    # Two segments (10 frames) were kept; the model saw frames 7-9 again to warm up, and only 10-39 were written.
    assert result.reused_frames == 10 and sum(upscaled) == FRAMES - 10 + 3 and resets == [1]
    assert result.frames_in == result.frames_out == FRAMES and result.verified
    assert_same_frames(out, source_times(source))


def test_one_frame_per_field_resumes_onto_the_frames_of_a_plain_run(tmp_path, monkeypatch):
    """--deinterlace field on a DVD whose frames carry their interlace flags: two frames per input frame, only the
    decoder knows which frames are flagged, so the index comes from decoded timestamps; a resumed run matches."""
    from test_archival import make_file

    source = tmp_path / "dvd.vob"
    make_file(source, fmt="vob", codec="mpeg2video", pix_fmt="yuv420p", size=(128, 96), rate=Fraction(25),
              frames=16, audio="mp2", field_order="tff", options={"g": "6", "bf": "2"})
    assert video.index_video(source, deinterlace="field").source == "decode"
    net = models.load_model("bicubic", scale=2)
    cfg = dict(device="cpu", batch_size=2, preset="ultrafast", deinterlace="field")
    plain = enhance_video(source, tmp_path / "plain.mkv", net, EnhanceConfig(**cfg))
    enhance_until_crash(source, tmp_path / "resumed.mkv", net, EnhanceConfig(**cfg, resume=True, segment_frames=5))
    resumed = enhance_video(source, tmp_path / "resumed.mkv", net, EnhanceConfig(**cfg, resume=True, segment_frames=5))
    assert plain.frames_out == 32 and resumed.reused_frames == 10 and resumed.frames_out == 32
    assert output_times(tmp_path / "resumed.mkv") == output_times(tmp_path / "plain.mkv")


def test_a_saved_index_is_reused_only_for_the_same_file_and_plan(tmp_path, sources):
    source = sources["h264.ts"]
    index = video.index_video(source)
    index.save(tmp_path / "index.json")
    assert video.FrameIndex.load(tmp_path / "index.json", video.index_identity(source, None)) == index
    assert video.FrameIndex.load(tmp_path / "index.json", video.index_identity(source, "field")) is None
    assert video.FrameIndex.load(tmp_path / "missing.json", video.index_identity(source, None)) is None
    # The span of seconds is the reader's: from the first frame at or after start to the last before end.
    first, stop = index.span(0.5, 1.3)
    assert [index.seconds(t) for t in index.times[first:stop]][::19] == [0.52, 1.28]
