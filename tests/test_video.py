"""vsr.video on small real clips made with PyAV (see conftest.make_clip), plus the shared real clips when present."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import clip_frame, clip_pts, make_clip

from vsr.errors import VsrError
from vsr.video import (
    FrameBatch,
    VideoWriter,
    available_codecs,
    encode_decode,
    probe,
    read_frames,
)

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
CHAPLIN = SHARED_VIDEO / "chaplin_archival_with_audio.mp4"


def all_frames(path, **kwargs) -> FrameBatch:
    batches = list(read_frames(path, **kwargs))
    return FrameBatch(np.concatenate([b.frames for b in batches]), [p for b in batches for p in b.pts],
                      batches[0].time_base)


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def writer_for(source, output, *, scale=1, **kwargs) -> VideoWriter:
    info = probe(source)
    return VideoWriter(output, width=info.width * scale, height=info.height * scale, time_base=info.time_base,
                       fps=info.fps, source=source, **{"preset": "ultrafast", **kwargs})


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    return np.ascontiguousarray(frames.repeat(scale, axis=1).repeat(scale, axis=2))


# --- probe -----------------------------------------------------------------------------------------------------


def test_probe_fields(clip_mp4):
    info = probe(clip_mp4)
    assert (info.width, info.height, info.frames, info.fps) == (64, 48, 12, 10)
    assert (info.codec, info.pix_fmt, info.bit_depth, info.rotation) == ("h264", "yuv420p", 8, 0)
    assert "mp4" in info.container and info.path == str(clip_mp4)
    assert info.duration == pytest.approx(1.2, abs=0.05)
    assert info.start_time == 0 and isinstance(info.time_base, Fraction)
    assert [(s.index, s.type, s.codec) for s in info.streams] == [(0, "video", "h264"), (1, "audio", "aac")]
    assert info.color_space is None and info.color_tags == {
        "color_range": None, "color_space": None, "color_primaries": None, "color_trc": None}


def test_probe_rotation_and_colour_tags(clip_factory):
    info = probe(clip_factory("rot.mp4", rotation=90, color_space="bt709", color_range="pc"))
    assert info.rotation == 90
    assert (info.color_space, info.color_range) == ("bt709", "pc")


@pytest.mark.parametrize("name, kwargs, codecs", [
    ("c.mkv", {"audio_codec": "libopus"}, ("h264", "opus")),
    ("c.mov", {}, ("h264", "aac")),
    ("c.webm", {"codec": "libvpx-vp9", "audio_codec": "libopus"}, ("vp9", "opus")),
    ("c.avi", {"codec": "mpeg4", "audio_codec": "libmp3lame"}, ("mpeg4", "mp3")),
    ("c.mkv", {"codec": "ffv1", "size": (63, 47), "audio": False}, ("ffv1",)),
])
def test_make_clip_containers(clip_factory, name, kwargs, codecs):
    path = clip_factory(name, frames=6, **kwargs)
    info = probe(path)
    assert tuple(s.codec for s in info.streams) == codecs
    got = all_frames(path)
    assert len(got.pts) == 6 and got.frames.shape[1:3] == (info.height, info.width)
    assert [p * got.time_base for p in got.pts] == [Fraction(i, 10) for i in range(6)]


# --- read_frames -----------------------------------------------------------------------------------------------


def test_read_frames_batches_and_pts(clip_mp4):
    batches = list(read_frames(clip_mp4, batch_size=5))
    assert [len(b.pts) for b in batches] == [5, 5, 2]
    for b in batches:
        assert b.frames.dtype == np.uint8 and b.frames.flags.c_contiguous
        assert b.frames.shape == (len(b.pts), 48, 64, 3)
    pts = [p for b in batches for p in b.pts]
    assert [p * batches[0].time_base for p in pts] == [Fraction(i, 10) for i in range(12)]


def test_read_frames_gives_rgb_pictures(clip_mp4):
    got = all_frames(clip_mp4).frames
    expected = np.stack([clip_frame(i, 64, 48) for i in range(12)])
    # Lossy H.264 at 4:2:0 on a tiny busy picture: close on average; swapped channels would be far off.
    assert np.abs(got.astype(int) - expected).mean() < 10
    assert np.abs(got[..., ::-1].astype(int) - expected).mean() > 20


def test_read_frames_keeps_vfr_pts(clip_vfr):
    got = all_frames(clip_vfr, batch_size=3)
    expected_pts, expected_tb = clip_pts(12, 10, vfr=True)
    assert [p * got.time_base for p in got.pts] == [p * expected_tb for p in expected_pts]
    assert len(set(np.diff(got.pts))) > 3  # really irregular


def test_read_frames_start_end(clip_mp4):
    got = all_frames(clip_mp4, start=0.3, end=0.8)
    assert [p * got.time_base for p in got.pts] == [Fraction(i, 10) for i in range(3, 8)]
    whole = all_frames(clip_mp4)
    np.testing.assert_array_equal(got.frames, whole.frames[3:8])


def test_read_frames_depth_16(clip_mp4):
    got = all_frames(clip_mp4, depth=16)
    assert got.frames.dtype == np.uint16 and got.frames.shape == (12, 48, 64, 3)
    low = all_frames(clip_mp4).frames.astype(int)
    diff = np.abs(got.frames / 257 - low)  # same picture, 16-bit scale; swscale's 8/16-bit paths round differently
    assert diff.mean() < 1 and diff.max() <= 4


# --- bad input -------------------------------------------------------------------------------------------------


def _zero_frame_video(path: Path) -> None:
    """A Matroska file whose video stream holds no frame (MP4 drops an empty track; the audio is real)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 22050, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def _bad_input(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.mp4"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is a text file, not a video\n" * 20)
    elif kind == "truncated":  # PyAV writes the index at the end: cut in half, it is gone
        data = make_clip(folder / "whole.mp4", frames=16).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_faststart":  # index at the front, promising frames the file no longer holds
        whole = make_clip(folder / "whole.mp4", frames=16)
        faststart = folder / "faststart.mp4"
        with av.open(str(whole)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
        data = faststart.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "audio_only":
        path = folder / "audio_only.m4a"
        make_clip(folder / "a.mp4", frames=4)
        with av.open(str(folder / "a.mp4")) as src, av.open(str(path), "w") as dst:
            out = dst.add_stream_from_template(src.streams.audio[0])
            for packet in src.demux(audio=0):
                if packet.dts is not None:
                    packet.stream = out
                    dst.mux(packet)
    elif kind == "zero_frames":
        path = folder / "zero_frames.mkv"
        _zero_frame_video(path)
    elif kind == "folder":
        path = folder / "clips"
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"),
    ("empty", "not a video file"),
    ("text", "not a video file"),
    ("truncated", "not a video file"),
    ("truncated_faststart", "truncated"),
    ("audio_only", "no video stream"),
    ("zero_frames", "no decodable video frames"),
    ("folder", "not a video file"),
])
def test_bad_input_gives_one_line_error(tmp_path, kind, message):
    path = _bad_input(kind, tmp_path)
    with pytest.raises(VsrError, match=message) as err:
        probe(path)
        list(read_frames(path))  # some damage only shows once every frame is read
    assert "\n" not in str(err.value)


def test_bad_read_arguments(clip_mp4):
    with pytest.raises(VsrError, match="batch size"):
        next(read_frames(clip_mp4, batch_size=0))


# --- VideoWriter -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("cfr.mp4", {}),
    ("vfr.mp4", {"vfr": True}),
    ("opus.mkv", {"audio_codec": "libopus"}),
    ("vfr.mkv", {"vfr": True, "audio_codec": "libopus"}),
])
def test_writer_round_trip(clip_factory, tmp_path, name, kwargs):
    source = clip_factory(name, **kwargs)
    output = tmp_path / f"out_{name}"
    original = all_frames(source, batch_size=5)
    with writer_for(source, output, scale=2) as writer:
        for batch in read_frames(source, batch_size=5):
            writer.write(upscale(batch.frames, 2), batch.pts)
    assert writer.frames_written == 12 and writer.warnings == []
    info = probe(output)
    assert (info.width, info.height) == (128, 96)
    result = all_frames(output)
    assert result.time_base == original.time_base and result.pts == original.pts
    assert audio_packets(output) == audio_packets(source) and len(audio_packets(source)) > 5
    assert leftovers(tmp_path) == []


def test_writer_copies_every_audio_stream_with_metadata(tmp_path):
    first = make_clip(tmp_path / "a.mkv", frames=6, audio_codec="libopus")
    source = tmp_path / "two_tracks.mkv"
    with av.open(str(first)) as src, av.open(str(source), "w") as dst:
        video = dst.add_stream_from_template(src.streams.video[0])
        tracks = [dst.add_stream_from_template(src.streams.audio[0]) for _ in range(2)]
        tracks[0].metadata["language"], tracks[1].metadata["language"] = "eng", "fra"
        tracks[1].metadata["title"] = "commentary"
        for packet in src.demux():
            if packet.dts is None:
                continue
            outs = [video] if packet.stream.type == "video" else tracks
            for out in outs:
                packet.stream = out
                dst.mux(packet)
    output = tmp_path / "out.mkv"
    with writer_for(source, output) as writer:
        for batch in read_frames(source):
            writer.write(batch.frames, batch.pts)
    streams = probe(output).streams
    assert [(s.type, s.language, s.title) for s in streams] == [
        ("video", None, None), ("audio", "eng", None), ("audio", "fra", "commentary")]
    with av.open(str(output)) as out, av.open(str(source)) as src:
        for i in (1, 2):
            assert [bytes(p) for p in out.demux(out.streams[i]) if p.size] == \
                   [bytes(p) for p in src.demux(src.streams[i]) if p.size]


def test_writer_without_audio(clip_mp4, tmp_path):
    output = tmp_path / "mute.mp4"
    with writer_for(clip_mp4, output, copy_audio=False) as writer:
        for batch in read_frames(clip_mp4):
            writer.write(batch.frames, batch.pts)
    assert [s.type for s in probe(output).streams] == ["video"]


@pytest.mark.parametrize("start, end, lo, hi", [(0.4, 0.8, 0.4, 0.8), (None, 0.8, 0, 0.8), (0.4, None, 0.4, 9)])
def test_writer_cuts_audio_to_excerpt(clip_mp4, tmp_path, start, end, lo, hi):
    output = tmp_path / "cut.mp4"
    with writer_for(clip_mp4, output, start=start, end=end) as writer:
        for batch in read_frames(clip_mp4, start=start, end=end):
            writer.write(batch.frames, batch.pts)
    with av.open(str(clip_mp4)) as src:
        stream = src.streams.audio[0]
        # Cut at the packet boundaries closest to the excerpt: a packet is kept when its middle is inside.
        kept = [bytes(p) for p in src.demux(stream)
                if p.size and lo <= (p.dts + Fraction(p.duration, 2)) * stream.time_base < hi]
    assert audio_packets(output) == kept and 0 < len(kept) < len(audio_packets(clip_mp4))
    frames = range(round(lo * 10), min(round(hi * 10), 12))
    assert [p * Fraction(1, 10240) for p in all_frames(output).pts] == [Fraction(i, 10) for i in frames]


def test_writer_failure_leaves_target_untouched(clip_mp4, tmp_path):
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with writer_for(clip_mp4, output) as writer:
            batch = next(read_frames(clip_mp4))
            writer.write(batch.frames, batch.pts)
            assert leftovers(tmp_path)  # work goes to a hidden temp file beside the target...
            raise RuntimeError("model crashed")
    assert not output.exists() and leftovers(tmp_path) == []  # ...which is gone after a failure

    output.write_bytes(b"the user's file")
    with pytest.raises(RuntimeError):
        with writer_for(clip_mp4, output, overwrite=True) as writer:
            raise RuntimeError("model crashed")
    assert output.read_bytes() == b"the user's file" and leftovers(tmp_path) == []


def test_writer_refuses_input_as_output_and_existing_output(clip_mp4, tmp_path):
    before = clip_mp4.read_bytes()
    for same in (clip_mp4, tmp_path / "." / clip_mp4.name):
        with pytest.raises(VsrError, match="same file as the input"):
            writer_for(clip_mp4, same, overwrite=True)
    assert clip_mp4.read_bytes() == before
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(VsrError, match="exists"):
        writer_for(clip_mp4, existing)
    assert existing.read_bytes() == b"keep me" and leftovers(tmp_path) == []


def test_writer_overwrites_when_asked(clip_mp4, tmp_path):
    output = tmp_path / "out.mp4"
    output.write_bytes(b"old")
    with writer_for(clip_mp4, output, overwrite=True) as writer:
        batch = next(read_frames(clip_mp4))
        writer.write(batch.frames, batch.pts)
    assert probe(output).frames == len(batch.pts)


@pytest.mark.parametrize("kwargs, message", [
    ({"codec": "libnope"}, "unknown codec"),
    ({"codec": "aac"}, "unknown codec"),  # an encoder, but not a video one
    ({"crf": 99}, "out of range"),
    ({"pix_fmt": "rgb565le"}, "cannot encode pix_fmt"),
])
def test_writer_rejects_bad_options(clip_mp4, tmp_path, kwargs, message):
    with pytest.raises(VsrError, match=message):
        writer_for(clip_mp4, tmp_path / "out.mp4", **kwargs)
    assert list(tmp_path.iterdir()) == [clip_mp4]


def test_writer_rejects_bad_frames_and_empty_output(clip_mp4, tmp_path):
    output = tmp_path / "out.mp4"
    batch = next(read_frames(clip_mp4, batch_size=2))
    with pytest.raises(VsrError, match="pts must increase"):
        with writer_for(clip_mp4, output) as writer:
            writer.write(batch.frames, batch.pts[::-1])
    with pytest.raises(VsrError, match="expected"):
        with writer_for(clip_mp4, output) as writer:
            writer.write(batch.frames[:, :10], batch.pts)
    with pytest.raises(VsrError, match="no frames"):
        with writer_for(clip_mp4, output):
            pass
    assert list(tmp_path.iterdir()) == [clip_mp4]


def test_writer_missing_output_folder_and_unknown_container(clip_mp4, tmp_path):
    with pytest.raises(VsrError, match="folder does not exist"):
        writer_for(clip_mp4, tmp_path / "nope" / "out.mp4")
    with pytest.raises(VsrError, match="output format"):
        writer_for(clip_mp4, tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == [clip_mp4]


def test_writer_output_gets_normal_permissions(clip_mp4, tmp_path):
    output = tmp_path / "out.mp4"
    with writer_for(clip_mp4, output) as writer:
        batch = next(read_frames(clip_mp4))
        writer.write(batch.frames, batch.pts)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert output.stat().st_mode == plain.stat().st_mode  # the umask's mode, not a private temp file's 0600


@pytest.mark.skipif("libsvtav1" not in available_codecs(), reason="needs libsvtav1 (WebM takes AV1, not H.264)")
def test_writer_warns_about_audio_the_container_cannot_hold(clip_mp4, tmp_path):
    output = tmp_path / "out.webm"
    with writer_for(clip_mp4, output, codec="libsvtav1") as writer:
        batch = next(read_frames(clip_mp4))
        writer.write(batch.frames, batch.pts)
    assert writer.warnings == ["audio stream #1 (aac) not copied: webm cannot hold aac"]
    assert [s.type for s in probe(output).streams] == ["video"]


def test_writer_pads_odd_sizes(clip_mp4, tmp_path):
    output = tmp_path / "odd.mp4"
    source = all_frames(clip_mp4)
    odd = np.ascontiguousarray(source.frames[:, :47, :63])
    info = probe(clip_mp4)
    with VideoWriter(output, width=63, height=47, time_base=info.time_base, fps=info.fps, crf=0) as writer:
        writer.write(odd, source.pts)
    assert writer.padded == (1, 1)
    assert writer.warnings == ["odd frame size 63x47 padded to 64x48 (edge pixels repeated; yuv420p needs even sizes)"]
    back = all_frames(output).frames
    assert back.shape == (12, 48, 64, 3)
    # The added column/row repeats the edge.
    assert np.abs(back[:, :, 63].astype(int) - back[:, :, 62]).mean() < 4
    assert np.abs(back[:, :47, :63].astype(int) - odd).mean() < 6


def test_writer_no_padding_for_444(clip_mp4, tmp_path):
    info = probe(clip_mp4)
    frames = np.ascontiguousarray(all_frames(clip_mp4).frames[:2, :47, :63])
    with VideoWriter(tmp_path / "odd.mkv", width=63, height=47, time_base=info.time_base, fps=info.fps,
                     codec="ffv1") as writer:
        writer.write(frames, [0, 1024])
    assert writer.padded == (0, 0) and writer.warnings == []
    assert probe(tmp_path / "odd.mkv").width == 63


@pytest.mark.parametrize("space, rng", [("bt709", "tv"), ("bt709", "pc"), ("smpte170m", "tv"), ("bt470bg", "pc"),
                                        (None, None)])
def test_writer_and_reader_keep_colour(tmp_path, space, rng):
    output = tmp_path / "flat.mp4"
    colour = np.array([200, 60, 30], np.uint8)  # saturated: a BT.601/709 or range mix-up moves it far
    frames = np.broadcast_to(colour, (2, 48, 64, 3)).copy()
    with VideoWriter(output, width=64, height=48, time_base=Fraction(1, 10), fps=Fraction(10), crf=0,
                     color_space=space, color_range=rng, color_primaries=space and "bt709",
                     color_trc=space and "bt709") as writer:
        writer.write(frames, [0, 1])
    info = probe(output)
    assert (info.color_space, info.color_range) == (space or "smpte170m", rng or "tv")  # untagged SD -> BT.601
    if space:
        assert (info.color_primaries, info.color_trc) == ("bt709", "bt709")
    back = all_frames(output).frames
    assert np.abs(back.astype(int) - colour).max() <= 2
    # The check has teeth: decoding the same file with the other matrix/range is visibly off.
    other = {"matrix": "ITU601" if space == "bt709" else "ITU709", "range": "JPEG" if rng != "pc" else "MPEG"}
    with av.open(str(output)) as container:
        frame = next(container.decode(video=0))
        wrong = frame.reformat(format="rgb24", src_colorspace=other["matrix"], src_color_range=other["range"])
    assert np.abs(wrong.to_ndarray().astype(int) - colour).max() > 6


def test_writer_keeps_rotation(clip_factory, tmp_path):
    source = clip_factory("rot.mp4", rotation=270)
    info = probe(source)
    with writer_for(source, tmp_path / "out.mp4", rotation=info.rotation) as writer:
        for batch in read_frames(source):
            writer.write(batch.frames, batch.pts)
    assert probe(tmp_path / "out.mp4").rotation == 270


@pytest.mark.parametrize("codec", [c for c in available_codecs() if not c.endswith("_nvenc")])
def test_writer_codecs(clip_mp4, tmp_path, codec):
    output = tmp_path / ("out.mkv" if codec == "ffv1" else "out.mp4")
    source = all_frames(clip_mp4)
    with writer_for(clip_mp4, output, codec=codec, preset="veryfast") as writer:
        writer.write(source.frames[:4], source.pts[:4])
    info = probe(output)
    assert info.codec == {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1", "ffv1": "ffv1", "libvpx-vp9": "vp9",
                          "mpeg2video": "mpeg2video", "mpeg4": "mpeg4"}[codec]
    # Compared as times: Matroska (used for ffv1) stores milliseconds whatever the input's time base was.
    assert [p * info.time_base for p in all_frames(output).pts] == [p * source.time_base for p in source.pts[:4]]
    assert audio_packets(output) == audio_packets(clip_mp4)


def test_writer_other_ffmpeg_encoder(clip_mp4, tmp_path):
    source = all_frames(clip_mp4)
    with writer_for(clip_mp4, tmp_path / "old.avi", codec="mpeg4") as writer:
        writer.write(source.frames, source.pts)
    info = probe(tmp_path / "old.avi")
    assert info.codec == "mpeg4"  # (info.frames counts AVI's empty placeholder chunks on its time grid, not frames)
    assert [p * info.time_base for p in all_frames(tmp_path / "old.avi").pts] == [Fraction(i, 10) for i in range(12)]


def test_writer_10_bit(clip_mp4, tmp_path):
    source = all_frames(clip_mp4, depth=16)
    output = tmp_path / "deep.mp4"
    with writer_for(clip_mp4, output, codec="libx265", pix_fmt="yuv420p10le") as writer:
        writer.write(source.frames[:3], source.pts[:3])
    info = probe(output)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p10le", 10)
    assert all_frames(output, depth=16).frames.dtype == np.uint16


def test_available_codecs():
    codecs = available_codecs()
    assert "libx264" in codecs and "ffv1" in codecs
    assert set(codecs) <= {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1", "mpeg2video", "mpeg4",
                           "h264_nvenc", "hevc_nvenc"}


# --- encode_decode ---------------------------------------------------------------------------------------------


def test_encode_decode_changes_pixels_at_high_crf(clip_mp4):
    frames = all_frames(clip_mp4).frames[:6]
    rough = encode_decode(frames, crf=45)
    fine = encode_decode(frames, crf=5)
    assert rough.shape == frames.shape and rough.dtype == np.uint8
    error = {name: np.abs(out.astype(int) - frames).mean() for name, out in (("rough", rough), ("fine", fine))}
    assert error["rough"] > 2 * error["fine"] and error["rough"] > 3


def test_encode_decode_odd_size():
    frames = np.stack([clip_frame(i, 33, 17) for i in range(3)])
    out = encode_decode(frames, crf=10)
    assert out.shape == (3, 17, 33, 3)
    assert np.abs(out.astype(int) - frames).mean() < 12


def test_encode_decode_rejects_bad_shape():
    with pytest.raises(VsrError):
        encode_decode(np.zeros((4, 4, 3), np.uint8))


# --- the shared real clips -------------------------------------------------------------------------------------


@pytest.mark.skipif(not CHAPLIN.exists(), reason="shared clips not present")
def test_shared_chaplin_probe():
    info = probe(CHAPLIN)
    assert (info.width, info.height, info.frames) == (640, 360, 241)
    audio = [s for s in info.streams if s.type == "audio"]
    assert len(audio) == 1 and audio[0].codec == "mp3"


@pytest.mark.slow
@pytest.mark.skipif(not CHAPLIN.exists(), reason="shared clips not present")
def test_shared_chaplin_round_trip(tmp_path):
    output = tmp_path / "chaplin.mp4"
    pts = []
    info = probe(CHAPLIN)
    with VideoWriter(output, width=160, height=90, time_base=info.time_base, fps=info.fps, source=CHAPLIN,
                     preset="ultrafast") as writer:
        for batch in read_frames(CHAPLIN, batch_size=16):
            # Quarter size keeps the encode cheap; timing and audio are what this test is about.
            writer.write(np.ascontiguousarray(batch.frames[:, ::4, ::4]), batch.pts)
            pts += batch.pts
    assert len(pts) == 241 and all_frames(output).pts == pts
    assert audio_packets(output) == audio_packets(CHAPLIN)


@pytest.mark.skipif(not (SHARED_VIDEO / "vtest_pets_480x360.avi").exists(), reason="shared clips not present")
def test_shared_avi_probe():
    info = probe(SHARED_VIDEO / "vtest_pets_480x360.avi")
    assert (info.width, info.height) == (480, 360) and info.container == "avi"


def test_timestamp_source_weighs_runs_from_across_the_file():
    """probe samples runs of frames after seeks across the file: a clean start does not decide for all of it."""
    from types import SimpleNamespace

    from vsr.video.probe import timestamp_source

    def run(pts, dts):
        return [SimpleNamespace(pts=p, dts=d) for p, d in zip(pts, dts)]

    clean = run(range(16), range(16))  # a first GOP without B-frames: both clocks count up
    b_frames = run([8, 6, 7, 11, 9, 10], range(20, 26))  # later, AVI-style B-frames: the pts go backwards
    assert timestamp_source(clean) == "pts"
    assert timestamp_source(clean, b_frames) == "dts"
    # The step between two runs (back to an earlier time, as after a seek) counts as no fault.
    assert timestamp_source(run(range(50, 60), range(50, 60)), run(range(10), range(10))) == "pts"
