"""Archival and broadcast footage as it comes: interlaced DVD (MPEG-2 in MPEG-PS) and DV (in AVI), anamorphic pixels,
MPEG-TS, WebM, AVI with B-frames, trimmed excerpts and memory-bound frame sizes, each built here with PyAV.

Interlaced inputs are woven from two instants of a moving progressive scene (one per field); that scene at the first
field's instant is the truth the deinterlaced output is compared with.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import audio_bytes, without_adts
from vsr import video
from vsr.cli import CODECS, DEINTERLACE_MODES, cli

NTSC = Fraction(30000, 1001)


def moving_scene(t: float, width: int, height: int) -> np.ndarray:
    """A detailed backdrop with a bright bar moving fast (10 px per field at 720 px), as handheld footage has."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 128 + 80 * np.sin(x / 9.0 + y / 23.0)
    img[..., 1] = 128 + 80 * np.cos(y / 7.0 - x / 31.0)
    img[..., 2] = 110 + 40 * np.sin((x + y) / 15.0)
    left = (600 * t * width / 720) % width
    img[(x >= left) & (x < left + width / 8) & (y > height / 5) & (y < 4 * height / 5)] = (235, 235, 220)
    return np.clip(img, 0, 255).astype(np.uint8)


def woven(t: float, period: float, width: int, height: int, top_first: bool) -> np.ndarray:
    """An interlaced frame: the first field (top rows for tff) at ``t``, the other half a frame later."""
    first, second = moving_scene(t, width, height), moving_scene(t + period / 2, width, height)
    frame = first.copy()
    rows = slice(1, None, 2) if top_first else slice(0, None, 2)
    frame[rows] = second[rows]
    return frame


def make_file(path: Path, *, fmt: str | None, codec: str, pix_fmt: str, size: tuple[int, int], rate: Fraction,
              frames: int, audio: str | None, field_order: str | None = None, sar: Fraction | None = None,
              options: dict | None = None, audio_rate: int = 48000) -> list[np.ndarray]:
    """Write a clip (interlaced when ``field_order`` is "tff"/"bff") and return its progressive truth frames."""
    width, height = size
    truth = []
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if sar:
            stream.codec_context.sample_aspect_ratio = sar
        graph = None
        if field_order:
            flags = av.codec.context.Flags
            stream.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
            # The frames must say which field comes first: setfield marks them, as a capture card would.
            graph = av.filter.Graph()
            source = graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=1 / rate)
            setfield, sink = graph.add("setfield", field_order), graph.add("buffersink")
            source.link_to(setfield)
            setfield.link_to(sink)
            graph.configure()
        sound = container.add_stream(audio, rate=audio_rate) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for i in range(frames):
            t = i / float(rate)
            truth.append(moving_scene(t, width, height))
            rgb = woven(t, 1 / float(rate), width, height, field_order == "tff") if field_order else truth[-1]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, 1 / rate
            if graph is not None:
                graph.push(frame)
                frame = graph.vpull()
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            _write_tone(container, sound, frames / float(rate), audio_rate)
    return truth


def _write_tone(container, stream, seconds: float, rate: int) -> None:
    fmt = stream.codec_context.codec.audio_formats[0].name
    size = stream.codec_context.frame_size or 1152
    total = int(seconds * rate)
    t = np.arange(total) / rate
    signal = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.7 * t)).astype(np.float32)
    for offset in range(0, total - size + 1, size):
        chunk = np.stack([signal[offset:offset + size]] * 2)
        if fmt == "s16":
            data = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
        elif fmt == "s16p":
            data = (chunk * 32767).astype(np.int16)
        elif fmt == "flt":
            data = np.ascontiguousarray(chunk.T.reshape(1, -1))
        else:
            data = chunk
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
        frame.sample_rate, frame.pts = rate, offset
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def enhance(*args) -> "CliRunner.Result":
    result = CliRunner().invoke(cli, ["enhance", *[str(a) for a in args]])
    assert result.exit_code == 0, result.output
    return result


def decoded(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of ``path`` as RGB (scaled to ``size`` with an area filter, as for comparing with the input)."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            if size:
                frame = frame.reformat(width=size[0], height=size[1], interpolation="AREA")
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / mse))


def packet_audio(path: Path) -> bytes:
    return without_adts(audio_bytes(path))


def assert_kept(source: Path, output: Path, frames: int) -> None:
    """Same frame count, display aspect and duration; strictly increasing pts; the audio bytes unchanged."""
    before, after = video.probe(source), video.probe(output)
    assert after.display_aspect == before.display_aspect
    with av.open(str(output)) as container:
        times = [f.pts for f in container.decode(video=0)]
    assert len(times) == frames
    assert all(a < b for a, b in zip(times, times[1:])), times
    assert packet_audio(output) == packet_audio(source)
    # Duration of the video: frame count times the frame period, the same as the input's.
    assert abs(float(after.duration or 0) - float(before.duration or 0)) <= 2 / float(before.fps or 25)


# --- interlaced sources ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dvd(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 16:9 NTSC DVD title: MPEG-2, top field first, SAR 32:27, MP2 audio, in MPEG-PS."""
    path = tmp_path_factory.mktemp("dvd") / "title.mpg"
    truth = make_file(path, fmt="vob", codec="mpeg2video", pix_fmt="yuv420p", size=(720, 480), rate=NTSC, frames=8,
                      audio="mp2", field_order="tff", sar=Fraction(32, 27),
                      options={"b": "8000k", "maxrate": "9000k", "bufsize": "1835k", "g": "12"})
    return path, truth


@pytest.fixture(scope="module")
def dv(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 4:3 NTSC DV tape capture: 4:1:1, bottom field first, SAR 8:9, PCM audio, in AVI."""
    path = tmp_path_factory.mktemp("dv") / "tape.avi"
    truth = make_file(path, fmt="avi", codec="dvvideo", pix_fmt="yuv411p", size=(720, 480), rate=NTSC, frames=8,
                      audio="pcm_s16le", field_order="bff", sar=Fraction(8, 9))
    return path, truth


@pytest.mark.parametrize("name", ["dvd", "dv"])
def test_interlaced_source_is_deinterlaced(name, request, tmp_path):
    source, truth = request.getfixturevalue(name)
    info = video.probe(source)
    assert info.interlaced is not None
    out = tmp_path / f"out{source.suffix}"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert "deinterlaced (bwdif" in result.stderr
    assert_kept(source, out, len(truth))
    woven_psnr = np.mean([psnr(a, b) for a, b in zip(decoded(source), truth)])
    back = decoded(out, (720, 480))
    out_psnr = np.mean([psnr(a, b) for a, b in zip(back, truth)])
    # The woven input combs every moving edge; the deinterlaced output, scaled back, is much closer to the scene.
    assert out_psnr >= woven_psnr + 2.0, (out_psnr, woven_psnr)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.field_order in (0, 1)  # unknown or progressive


def test_deinterlace_off_keeps_the_weave_and_field_doubles_the_rate(dvd, tmp_path):
    source, truth = dvd
    off = tmp_path / "off.mkv"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--deinterlace", "off", "-o", off)
    woven_frames = decoded(source)
    assert psnr(decoded(off, (720, 480))[3], woven_frames[3]) > 30  # still the woven picture
    field = tmp_path / "field.mkv"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--deinterlace", "field", "-o", field)
    assert "one frame per field" in result.stderr
    times = video_times_of(field)
    assert len(times) == 2 * len(truth)
    steps = {round(float(b - a) * 1000) for a, b in zip(times, times[1:])}
    assert steps <= {16, 17}, steps  # 59.94 frames a second, each at its field's instant (Matroska rounds to ms)
    assert packet_audio(field) == packet_audio(source)


def video_times_of(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(p.pts * p.time_base for p in container.demux(stream) if p.size)


def test_deinterlace_modes_match_the_cli():
    assert DEINTERLACE_MODES == video.DEINTERLACE_MODES
    assert CODECS == video.CODECS


# --- aspect, containers, timing ----------------------------------------------------------------------------------


def test_anamorphic_progressive_mp4_keeps_its_display_aspect(tmp_path):
    source = tmp_path / "wide.mp4"
    truth = make_file(source, fmt=None, codec="libx264", pix_fmt="yuv420p", size=(240, 180), rate=Fraction(25),
                      frames=6, audio="aac", sar=Fraction(4, 3), audio_rate=44100)
    out = tmp_path / "wide_x2.mp4"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert video.probe(out).sample_aspect_ratio == Fraction(4, 3)
    assert video.probe(out).display_aspect == Fraction(16, 9)
    assert_kept(source, out, len(truth))


@pytest.mark.parametrize("sar, size, expected", [(Fraction(4, 3), (240, 180), (640, 360)),
                                                  (Fraction(8, 9), (180, 120), (360, 270))])
def test_square_pixels_resamples_to_the_same_display_aspect(tmp_path, sar, size, expected):
    source = tmp_path / "anamorphic.mkv"
    make_file(source, fmt=None, codec="libx264", pix_fmt="yuv420p", size=size, rate=Fraction(25), frames=3,
              audio=None, sar=sar)
    out = tmp_path / "square.mkv"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--square-pixels", "-o", out)
    info = video.probe(out)
    assert (info.width, info.height) == expected and info.sample_aspect_ratio is None
    assert info.display_aspect == video.probe(source).display_aspect


def test_mpeg_ts_with_aac(tmp_path):
    source = tmp_path / "broadcast.ts"
    truth = make_file(source, fmt="mpegts", codec="libx264", pix_fmt="yuv420p", size=(160, 90), rate=Fraction(25),
                      frames=10, audio="aac", audio_rate=48000)
    assert video.probe(source).start_time > 0  # MPEG-TS starts at ~1.4 s
    out = tmp_path / "broadcast_x2.ts"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert_kept(source, out, len(truth))
    assert video_times_of(out) == video_times_of(source)


def test_webm_gets_vp9_by_default(tmp_path):
    source = tmp_path / "web.webm"
    truth = make_file(source, fmt=None, codec="libvpx-vp9", pix_fmt="yuv420p", size=(160, 96), rate=Fraction(25),
                      frames=8, audio="libopus", options={"deadline": "realtime", "cpu-used": "8"})
    out = tmp_path / "web_x2.webm"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert "libvpx-vp9" in result.stderr
    assert video.probe(out).codec == "vp9"
    assert_kept(source, out, len(truth))


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_avi_with_b_frames_keeps_display_timing(tmp_path, codec):
    """AVI stores no pts: with B-frames, decoded frames come out carrying other frames' pts (H.264: 1, 3, 4, 2, ...).
    Their display times are FFmpeg's best-effort ones; the output holds them, strictly increasing."""
    source = tmp_path / f"dvr_{codec}.avi"
    options = {"bf": "2", "preset": "fast"} if codec == "libx264" else {"bf": "2", "qmin": "3", "qmax": "3"}
    truth = make_file(source, fmt="avi", codec=codec, pix_fmt="yuv420p", size=(160, 120), rate=Fraction(25),
                      frames=20, audio="pcm_s16le", options=options)
    info = video.probe(source)
    with av.open(str(source)) as container:
        raw = [f.pts for f in container.decode(video=0)]
    times = [p for batch in video.read_frames(source, 8, info=info) for p in batch.pts]
    assert len(times) == len(truth) and all(b - a == 1 for a, b in zip(times, times[1:])), (raw, times)
    out = tmp_path / "out.avi"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert "mpeg4" in result.stderr  # AVI's default: exact timestamps, no B-frames
    assert_kept(source, out, len(truth))
    with av.open(str(out)) as container:
        shown = [f.pts for f in container.decode(video=0)]
    # Every interval as in the input, except that FFmpeg's AVI demuxer reads a file whose first frame is not at
    # index 0 back with that frame at 0 (the writer's frames are at 1, 2, 3, ...).
    assert [b - a for a, b in zip(shown[1:], shown[2:])] == [1] * (len(shown) - 2)
    assert shown[-1] == times[-1]
    # --end keeps every frame before it, also where the raw pts were out of order.
    cut = tmp_path / "cut.avi"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--end", "0.3", "-o", cut)
    first = times[0] * float(info.time_base)
    assert len(decoded(cut)) == sum(1 for p in times if p * float(info.time_base) < 0.3) > round((0.3 - first) * 25) - 1


def test_trimmed_output_starts_at_zero(tmp_path):
    source = tmp_path / "long.mp4"
    make_file(source, fmt=None, codec="libx264", pix_fmt="yuv420p", size=(96, 64), rate=Fraction(25), frames=75,
              audio="aac", audio_rate=48000)
    out = tmp_path / "cut.mp4"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--start", "1", "--end", "2", "-o", out)
    with av.open(str(out)) as container:
        assert container.streams.audio  # the cut keeps its audio stream
        first_video = min(p.pts * p.time_base for p in container.demux(container.streams.video[0]) if p.size)
    with av.open(str(out)) as container:
        audio_times = [p.pts * p.time_base for p in container.demux(container.streams.audio[0]) if p.size]
    assert first_video == 0
    assert abs(float(audio_times[0])) <= 1024 / 48000  # cut at the closest packet boundary
    assert len(video_times_of(out)) == 25
    assert abs(float(video.probe(out).duration) - 1.0) < 0.05
    # The audio inside the excerpt is byte-identical to the source's packets.
    assert packet_audio(out) in packet_audio(source)
    kept = tmp_path / "kept.mp4"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--start", "1", "--end", "2",
            "--keep-timestamps", "-o", kept)
    assert min(video_times_of(kept)) == 1


def test_trim_with_resume_matches_a_plain_run(tmp_path):
    source = tmp_path / "long.mp4"
    make_file(source, fmt=None, codec="libx264", pix_fmt="yuv420p", size=(96, 64), rate=Fraction(25), frames=50,
              audio="aac", audio_rate=48000)
    plain, resumed = tmp_path / "plain.mp4", tmp_path / "resumed.mp4"
    args = ["-m", "bicubic", "-s", "2", "--device", "cpu", "--start", "0.4", "--end", "1.6"]
    enhance(source, *args, "-o", plain)
    enhance(source, *args, "--resume", "--segment-frames", "10", "-o", resumed)
    assert video_times_of(plain) == video_times_of(resumed)
    assert min(video_times_of(resumed)) == 0
    assert packet_audio(plain) == packet_audio(resumed)


# --- memory ------------------------------------------------------------------------------------------------------


def test_batch_and_tile_chosen_to_fit(tmp_path, monkeypatch):
    source = tmp_path / "big.mp4"
    make_file(source, fmt=None, codec="libx264", pix_fmt="yuv420p", size=(128, 96), rate=Fraction(25), frames=4,
              audio=None)
    monkeypatch.setenv("VSR_MEMORY_LIMIT", "6M")
    out = tmp_path / "big_x2.mp4"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-b", "4", "-o", out)
    assert "Note: frames of 128x96" in result.stderr and "running whole frames, batch 1" in result.stderr
    assert len(video_times_of(out)) == 4


@pytest.mark.parametrize("fmt, codec, name", [("h264", "libx264", "raw.h264"), ("mpeg2video", "mpeg2video", "raw.m2v")])
def test_elementary_stream_without_timestamps(tmp_path, fmt, codec, name):
    """Raw streams carry no container clock (H.264 none at all): frames are timed at the nominal rate, written into
    Matroska (the default output for them), and --end keeps every frame before it."""
    source = tmp_path / name
    make_file(source, fmt=fmt, codec=codec, pix_fmt="yuv420p", size=(160, 96), rate=Fraction(25), frames=20,
              audio=None, options={"bf": "2"})
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu")
    out = tmp_path / "raw_x2.mkv"
    assert "20/20 frames" in result.stderr and out.exists()
    steps = {round(float(b - a), 3) for a, b in zip(video_times_of(out), video_times_of(out)[1:])}
    assert steps == {0.04}
    cut = tmp_path / "cut.mkv"
    enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "--end", "0.3", "-o", cut)
    assert video_times_of(cut) == [t for t in video_times_of(out) if t < Fraction(3, 10)]


# --- a progressive leader, then interlaced video ------------------------------------------------------------------


def make_leader_then_interlaced(path: Path, *, size: tuple[int, int] = (320, 192), rate: int = 25, leader: int = 50,
                                interlaced: int = 25) -> list[np.ndarray]:
    """MPEG-2 in MPEG-PS: ``leader`` progressive frames (2 s, as a slate or a menu), then ``interlaced`` frames woven
    top field first and marked so, as a capture that starts on a still would be. Two encoders feed one stream (the
    second with interlaced coding): a new sequence header starts the interlaced part. Returns the progressive truth.
    """
    width, height = size
    flags = av.codec.context.Flags
    truth = []
    with av.open(str(path), "w", format="vob") as container:
        stream = container.add_stream("mpeg2video", rate=rate, options={"g": "12", "b": "3000k"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        second = av.CodecContext.create("mpeg2video", "w")
        second.width, second.height, second.pix_fmt = width, height, "yuv420p"
        second.time_base, second.framerate = Fraction(1, rate), Fraction(rate)
        second.bit_rate, second.gop_size = 3_000_000, 12
        second.flags |= flags.interlaced_dct | flags.interlaced_me
        graph = av.filter.Graph()
        source = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=Fraction(1, rate))
        setfield, sink = graph.add("setfield", "tff"), graph.add("buffersink")
        source.link_to(setfield)
        setfield.link_to(sink)
        graph.configure()
        for i in range(leader + interlaced):
            t = i / rate
            truth.append(moving_scene(t, width, height))
            rgb = truth[-1] if i < leader else woven(t, 1 / rate, width, height, True)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            if i < leader:
                container.mux(stream.encode(frame))
                if i == leader - 1:
                    container.mux(stream.encode(None))
                continue
            graph.push(frame)
            for packet in second.encode(graph.vpull()):
                packet.stream = stream
                container.mux(packet)
        for packet in second.encode(None):
            packet.stream = stream
            container.mux(packet)
    return truth


@pytest.fixture(scope="module")
def leader_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("leader") / "capture.mpg"
    return path, make_leader_then_interlaced(path)


def _deinterlacing_gain(source: Path, out: Path, truth: list[np.ndarray], frames: slice) -> float:
    """Mean PSNR against the progressive truth of ``out`` (scaled back) minus that of the source, over ``frames``."""
    size = truth[0].shape[1], truth[0].shape[0]
    before = np.mean([psnr(a, b) for a, b in zip(decoded(source)[frames], truth[frames])])
    after = np.mean([psnr(a, b) for a, b in zip(decoded(out, size)[frames], truth[frames])])
    return after - before


def test_progressive_leader_then_interlaced_is_deinterlaced_after_the_leader(leader_clip, tmp_path):
    source, truth = leader_clip
    assert video.probe(source).interlaced == "flagged"  # found by sampling the file, not by its first frames
    out = tmp_path / "out.mkv"
    result = enhance(source, "-m", "bicubic", "-s", "2", "--device", "cpu", "-o", out)
    assert "deinterlaced (bwdif" in result.stderr
    before, after = video_times_of(source), video_times_of(out)
    assert [t - after[0] for t in after] == [t - before[0] for t in before]  # every frame, at its time
    # After 2 s the combing is gone: +8.3 dB here (the same run with --deinterlace off: +1.7, from the scaling alone).
    assert _deinterlacing_gain(source, out, truth, slice(52, None)) >= 5.0
    assert abs(_deinterlacing_gain(source, out, truth, slice(0, 50))) < 0.5  # the leader: passed through


def test_each_frames_mark_decides_where_the_probe_saw_none(leader_clip):
    """With sampling that missed it (here: a probe told progressive), the frames' own marks still decide."""
    import dataclasses

    source, truth = leader_clip
    info = dataclasses.replace(video.probe(source), interlaced=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say when told not to deinterlace
        off = np.concatenate([b.frames for b in video.read_frames(source, 16, info=info, deinterlace="off")])
    with pytest.warns(UserWarning, match=r"frames marked interlaced from 2\.000 s on"):
        auto = np.concatenate([b.frames for b in video.read_frames(source, 16, info=info)])
    assert len(auto) == len(off) == len(truth)
    np.testing.assert_array_equal(auto[:50], off[:50])  # not touched before the first marked frame
    gain = np.mean([psnr(a, b) for a, b in zip(auto[52:], truth[52:])]) - np.mean(
        [psnr(a, b) for a, b in zip(off[52:], truth[52:])])
    assert gain >= 5.0, gain
