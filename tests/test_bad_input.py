"""The bad-input matrix of `vsr enhance`, as a user meets it through the CLI.

Every case either succeeds correctly or fails with exactly one `Error: ...` line (the last line on stderr), exit 1,
no traceback, nothing at the target path, no temp file left, and every file the user had unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_clip
from PIL import Image

from vsr import models
from vsr.cli import cli

REPO = Path(__file__).resolve().parents[1]
BICUBIC_X2 = ["-m", "bicubic", "-s", "2", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(cli, ["enhance", *[str(a) for a in args]])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_clean_failure(result, folder: Path, before: dict[str, str], *fragments: str) -> str:
    """One `Error:` line, last on stderr; exit 1; no traceback; the folder exactly as it was. Returns the line."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert snapshot(folder) == before, "the user's files changed, or something was left behind"
    return errors[0]


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.mp4", frames=8)


def tiny_weights(path: Path, arch: str = "srresnet", scale: int = 2) -> Path:
    torch.manual_seed(0)
    args = {"scale": scale, "num_feat": 4, "num_block": 1} if arch == "srresnet" else {"scale": scale}
    models.save_weights(models.build_model(arch, **args), path, arch=arch, args=args)
    return path


# --- the input ---------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    before = snapshot(tmp_path)
    assert_clean_failure(run(tmp_path / "nope.mp4", *BICUBIC_X2), tmp_path, before, "no such file", "nope.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    before = snapshot(tmp_path)
    assert_clean_failure(run(tmp_path / "empty.mp4", *BICUBIC_X2), tmp_path, before, "empty.mp4", "empty")


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n")
    before = snapshot(tmp_path)
    assert_clean_failure(run(tmp_path / "notes.mp4", *BICUBIC_X2), tmp_path, before, "not a video file")


def _faststart_copy(src: Path, dst: Path) -> Path:
    """Remux with the index (moov) first, as streaming MP4s are: a cut then leaves decodable frames before it."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst


@pytest.mark.parametrize("index_first", [False, True], ids=["index-at-end", "index-first"])
def test_truncated_mp4(tmp_path, clip, index_first):
    # Index at the end (the default): the cut loses the index, nothing is readable. Index first: frames decode
    # until the cut, then the file ends early -- the run must fail rather than write a short video.
    source = _faststart_copy(clip, tmp_path / "fast.mp4") if index_first else clip
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    before = snapshot(tmp_path)
    fragment = "truncated" if index_first else "not a video file"
    assert_clean_failure(run(cut, *BICUBIC_X2), tmp_path, before, "cut.mp4", fragment)


def test_audio_only_file(tmp_path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=22050)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 22050, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    before = snapshot(tmp_path)
    assert_clean_failure(run(path, *BICUBIC_X2, "-o", tmp_path / "out.mp4"), tmp_path, before, "no video stream")


def test_image_sequence_folder_is_upscaled(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(folder / f"frame_{i:04d}.png")
    result = run(folder, *BICUBIC_X2, "-o", tmp_path / "up")
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "up").iterdir())
    assert [p.name for p in outputs] == [f"frame_{i:04d}_x2.png" for i in range(3)]
    assert all(Image.open(p).size == (32, 24) for p in outputs)


def test_unsupported_codec(tmp_path, clip):
    # An MP4 whose video sample entry names a codec no decoder knows ('avc1' renamed): probing must say so.
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(clip.read_bytes().replace(b"avc1", b"zzz1"))
    clip.unlink()
    before = snapshot(tmp_path)
    assert_clean_failure(run(odd, *BICUBIC_X2), tmp_path, before, "odd.mp4")


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_zero_frame_video(tmp_path, ext):
    path = tmp_path / f"zero{ext}"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()  # headers with a video stream, then no frame at all
    container.close()
    before = snapshot(tmp_path)
    assert_clean_failure(run(path, *BICUBIC_X2), tmp_path, before, "zero")


# --- memory ------------------------------------------------------------------------------------------------------


def test_frames_too_big_without_tile_get_tiles_chosen(tmp_path, clip, monkeypatch):
    # A pretend 850 KiB machine: one 64x48 frame through a srresnet then needs tiles, like 4K at x4 on a real one.
    weights = tiny_weights(tmp_path / "sr.pt")
    monkeypatch.setenv("VSR_MEMORY_LIMIT", "850K")
    out = tmp_path / "out.mp4"
    args = [clip, "--weights", weights, "-s", "2", "--device", "cpu", "--fp32", "--tile-pad", "2", "-o", out]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "8/8 frames" in result.stderr
    start = result.stderr.splitlines()[0]  # the start line says what was chosen and why
    assert re.search(r"batch \d+, tiles of \d+ \+ 2 overlap", start), start
    assert "more than the 850 KiB of VSR_MEMORY_LIMIT" in start, start


def test_frames_too_big_even_with_tiles(tmp_path, clip, monkeypatch):
    monkeypatch.setenv("VSR_MEMORY_LIMIT", "100K")
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, *BICUBIC_X2, "--tile", "32"), tmp_path, before, "(--tile 32)",
                         "even with --tile 16 --batch-size 1")


# --- the output --------------------------------------------------------------------------------------------------


def test_output_folder_is_a_file(tmp_path, clip):
    # Fails for root too (unlike a read-only folder): a path under a regular file cannot be created.
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, *BICUBIC_X2, "-o", tmp_path / "afile" / "out.mp4"), tmp_path, before, "afile")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(tmp_path, clip):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        before = snapshot(tmp_path)
        assert_clean_failure(run(clip, *BICUBIC_X2, "-o", locked / "out.mp4"), tmp_path, before, "permission denied")
    finally:
        locked.chmod(0o700)


def test_full_disk_injected_at_the_writer(tmp_path, clip, monkeypatch):
    # ENOSPC from the output container once ~4 KB are written: the writer must report it and delete its temp file.
    real_open = av.open

    class FullDisk:
        def __init__(self, container):
            self._container, self._budget = container, 4000

        def mux(self, packets):
            for packet in packets if isinstance(packets, (list, tuple)) else [packets]:
                self._budget -= packet.size
                if self._budget < 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._container.mux(packets)

        def __getattr__(self, name):
            return getattr(self._container, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._container.close()

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        container = real_open(file, mode, *args, **kwargs)
        return FullDisk(container) if mode == "w" else container

    monkeypatch.setattr(av, "open", open_on_full_disk)
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, *BICUBIC_X2, "-o", tmp_path / "out.mp4"), tmp_path, before,
                         "No space left on device")


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then writes past the limit fail with EFBIG instead of killing
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_full_disk_real_write_failure(tmp_path):
    # The real FFmpeg write path failing, in a process that may write at most 20 kB per file (no mount needed).
    clip = make_clip(tmp_path / "clip.mp4", frames=24)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "vsr", "enhance", clip, *BICUBIC_X2, "-o", tmp_path / "out.mp4"],
                          cwd=REPO, preexec_fn=_limit_file_size, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("Error: cannot write") and "Traceback" not in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == before


def test_output_equal_to_input(tmp_path, clip):
    os.link(clip, tmp_path / "same.mp4")  # another name for the same file counts too
    before = snapshot(tmp_path)
    for target in (clip, tmp_path / "same.mp4"):
        assert_clean_failure(run(clip, *BICUBIC_X2, "-o", target, "--overwrite"), tmp_path, before,
                             "same file as the input")


def test_existing_output_without_overwrite(tmp_path, clip):
    (tmp_path / "taken.mp4").write_bytes(b"keep me")
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, *BICUBIC_X2, "-o", tmp_path / "taken.mp4"), tmp_path, before,
                         "output file exists", "--overwrite")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--scale", "5"], "'5' is not one of"),
        (["--crf", "99"], "99 is not in the range"),
        (["--crf", "55"], "crf 55 is out of range for libx264"),
        (["--codec", "divx"], "'divx' is not one of"),
        (["--batch-size", "0"], "0 is not in the range"),
        (["--start", "1:75"], "not seconds"),
        (["--start", "2", "--end", "1"], "--end (1 s) must be after --start (2 s)"),
        (["--pix-fmt", "yuv999p"], "yuv999p"),
        (["--segment-frames", "0", "--resume"], "0 is not in the range"),
    ],
    ids=["scale", "crf-range", "crf-x264", "codec", "batch", "start", "end-before-start", "pix-fmt", "segments"],
)
def test_invalid_option_values(tmp_path, clip, args, fragment):
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, *BICUBIC_X2, "-o", tmp_path / "out.mp4", *args), tmp_path, before, fragment)


# --- the weights -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_corrupted_weights_file(tmp_path, clip, damage):
    weights = tiny_weights(tmp_path / "sr.pt")
    data = weights.read_bytes()
    weights.write_bytes(b"\x80\x02garbage" if damage == "garbage" else data[: len(data) // 2])
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, "--weights", weights, "-s", "2", "--device", "cpu"), tmp_path, before, "sr.pt")


def test_weights_of_the_wrong_scale(tmp_path, clip):
    weights = tiny_weights(tmp_path / "sr_x4.pt", scale=4)
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, "--weights", weights, "-s", "2", "--device", "cpu"), tmp_path, before,
                         "are for x4, asked for x2")


def test_weights_of_the_wrong_arch(tmp_path, clip):
    weights = tiny_weights(tmp_path / "espcn.pt", arch="espcn")
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, "-m", "srresnet", "--weights", weights, "-s", "2", "--device", "cpu"), tmp_path,
                         before, "are for espcn, not srresnet")
    # Without -m the file's own arch is used: the same weights work.
    result = run(clip, "--weights", weights, "-s", "2", "--device", "cpu", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 0, result.output


def test_basicsr_weights_that_do_not_fit_the_arch(tmp_path, clip):
    torch.manual_seed(0)
    torch.save({"params": models.build_model("espcn", scale=2).state_dict()}, tmp_path / "basicsr.pth")
    before = snapshot(tmp_path)
    assert_clean_failure(run(clip, "-m", "srresnet", "--weights", tmp_path / "basicsr.pth", "-s", "2", "--device",
                             "cpu"), tmp_path, before, "basicsr.pth")
