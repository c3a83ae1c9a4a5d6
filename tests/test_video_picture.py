"""vsr.video keeps time and picture: start offsets, rotation, colour (BT.709 limited and full range), 10-bit depth and
odd sizes survive the writer; the writer checks frames in == frames out and first/last pts on every file."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import make_clip, other_streams, video_times

from vsr.errors import VsrError
from vsr.video import VideoInfo, VideoSummary, VideoWriter, output_pix_fmt, probe, read_frames, summarize
from vsr.video import writer as writer_module


def flat(rgb, dtype=np.uint8):
    """A make_clip ``picture`` of one colour."""
    return lambda index, width, height: np.full((height, width, 3), rgb, dtype)


def all_frames(path, **kwargs) -> tuple[np.ndarray, list[int]]:
    batches = list(read_frames(path, **kwargs))
    return np.concatenate([b.frames for b in batches]), [p for b in batches for p in b.pts]


def round_trip(source, output, *, scale: int = 1, depth: int = 8, **kwargs) -> VideoWriter:
    info = probe(source)
    with VideoWriter(output, width=info.width * scale, height=info.height * scale, time_base=info.time_base,
                     fps=info.fps, source=source, preset="ultrafast", rotation=info.rotation,
                     **{**info.color_tags, **kwargs}) as writer:
        for batch in read_frames(source, batch_size=4, depth=depth):
            writer.write(np.ascontiguousarray(batch.frames.repeat(scale, axis=1).repeat(scale, axis=2)), batch.pts)
    return writer


def start_times(path) -> dict[str, Fraction]:
    with av.open(str(path)) as container:
        return {s.type: s.start_time * s.time_base for s in container.streams if s.start_time is not None}


def y_plane(path) -> np.ndarray:
    """The luma plane of the first frame as the file stores it (uint16 for 10-bit formats)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray()[: frame.height]


# --- time ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("off.mp4", {}),
    ("off.mkv", {"audio_codec": "libopus"}),
    ("off.mov", {}),
    ("off.webm", {"codec": "libvpx-vp9", "audio_codec": "libopus"}),
])
def test_video_start_offset_and_duration_kept(tmp_path, name, kwargs):
    source = make_clip(tmp_path / name, start=0.5, **kwargs)
    assert start_times(source)["video"] == Fraction(1, 2)  # the video starts half a second after the audio
    output = tmp_path / f"out_{name}"
    writer = round_trip(source, output, codec=kwargs.get("codec", "libx264"))
    assert start_times(output) == start_times(source)
    assert video_times(output) == video_times(source)
    assert probe(output).duration == pytest.approx(probe(source).duration, abs=0.002)
    assert other_streams(output) == other_streams(source)
    assert (writer.first_pts, writer.last_pts, writer.frames_written) == (*all_frames(source)[1][::11], 12)


def test_writer_exposes_what_it_checked(clip_vfr, tmp_path):
    writer = round_trip(clip_vfr, tmp_path / "out.mkv")
    pts = all_frames(clip_vfr)[1]
    assert (writer.first_pts, writer.last_pts) == (pts[0], pts[-1])
    # Matroska stores milliseconds: the summary is in its time base, the times are the same.
    assert writer.summary == VideoSummary(frames=12, first_pts=0, last_pts=850, time_base=Fraction(1, 1000))
    assert summarize(tmp_path / "out.mkv") == writer.summary
    assert pts[-1] * probe(clip_vfr).time_base == Fraction(850, 1000)


def test_writer_check_failure_leaves_nothing(clip_mp4, tmp_path, monkeypatch):
    def one_frame_short(path):
        real = summarize(path)
        return VideoSummary(real.frames - 1, real.first_pts, real.last_pts, real.time_base)

    monkeypatch.setattr(writer_module, "summarize", one_frame_short)
    output = tmp_path / "out.mp4"
    with pytest.raises(VsrError, match="output check failed: .* holds 11 video frames, 12 were written"):
        round_trip(clip_mp4, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def _packets(pts, dts) -> list[av.Packet]:
    packets = [av.Packet(b"x") for _ in pts]
    for packet, p, d in zip(packets, pts, dts):
        packet.pts, packet.dts = p, d
    return packets


@pytest.mark.parametrize("pts, dts, fixed", [
    ([300], [-65332], [300]),  # libx265's uninitialised offset in a one-frame encode
    ([550, 567], [-65082, -65065], [550, 567]),
    ([0, 200, 100], [5000, 5200, 5100], [0, 99, 100]),  # dts after pts
    ([0, 40, 233, 200, 80], [-80, -40, 0, 40, 80], [-80, -40, 0, 40, 80]),  # a valid B-frame lead-in: kept
    ([0, 1024, 512], [-1024, -512, 0], [-1024, -512, 0]),
])
def test_fix_short_dts(pts, dts, fixed):
    packets = _packets(pts, dts)
    writer_module.fix_short_dts(packets)
    assert [p.dts for p in packets] == fixed and [p.pts for p in packets] == pts


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_very_short_hevc_encodes_get_valid_timestamps(clip_vfr, tmp_path, frames):
    batch = next(read_frames(clip_vfr, batch_size=frames))
    info = probe(clip_vfr)
    for attempt in range(3):  # libx265's bad offset differs from run to run
        output = tmp_path / f"short{attempt}.mp4"
        with VideoWriter(output, width=64, height=48, time_base=info.time_base, fps=info.fps, codec="libx265",
                         preset="medium") as writer:
            writer.write(batch.frames, batch.pts)
        with av.open(str(output)) as container:
            packets = [p for p in container.demux(video=0) if p.size]
        assert all(p.dts <= p.pts for p in packets) and packets[0].dts >= -max(batch.pts)


# --- picture ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotation", [90, 180])
def test_rotation_round_trip(tmp_path, rotation):
    source = make_clip(tmp_path / "rot.mp4", rotation=rotation, frames=4)
    output = tmp_path / "out.mkv"
    round_trip(source, output, scale=2)
    assert probe(output).rotation == rotation
    # Frames are read and written as stored; the tag tells players to turn them, as the input's did.
    assert all_frames(output)[0].shape == (4, 96, 128, 3)


@pytest.mark.parametrize("color_range", ["tv", "pc"])
def test_bt709_flat_patch_within_2_after_x2_round_trip(tmp_path, color_range):
    colour = (200, 60, 30)  # saturated: a BT.601/709 or limited/full mix-up moves it by far more than 2
    source = make_clip(tmp_path / "flat.mp4", frames=3, audio=False, picture=flat(colour), color_space="bt709",
                       color_range=color_range)
    info = probe(source)
    assert (info.color_space, info.color_range) == ("bt709", color_range)
    output = tmp_path / "out.mp4"
    round_trip(source, output, scale=2)
    out_info = probe(output)
    assert (out_info.color_space, out_info.color_range) == ("bt709", color_range)
    before, after = all_frames(source)[0][:, 8:-8, 8:-8], all_frames(output)[0][:, 16:-16, 16:-16]
    assert np.abs(after.astype(int) - before.mean(axis=(0, 1, 2))).max() <= 2
    # (The source's own 8-bit 4:2:0 encode already moved the colour by up to 3 code values.)
    assert np.abs(after.astype(int) - colour).max() <= 4


def test_10_bit_hevc_stays_10_bit(tmp_path):
    grey = 30150  # 16-bit RGB grey whose 10-bit luma (469) is not a multiple of 4: 8 bits cannot hold it
    source = make_clip(tmp_path / "deep.mkv", codec="libx265", pix_fmt="yuv420p10le", audio_codec="libopus",
                       frames=4, picture=flat((grey, grey, grey), np.uint16), color_space="bt709", color_range="tv")
    info = probe(source)
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("hevc", "yuv420p10le", 10)
    luma = y_plane(source)
    assert luma.min() == luma.max() and luma[0, 0] % 4
    output = tmp_path / "out.mkv"
    writer = round_trip(source, output, depth=16, codec="libx265")  # pix_fmt=None: keep the input's depth
    assert writer.pix_fmt == "yuv420p10le" and writer.warnings == []
    out_info = probe(output)
    assert (out_info.pix_fmt, out_info.bit_depth) == ("yuv420p10le", 10)
    np.testing.assert_array_equal(y_plane(output), luma)
    assert video_times(output) == video_times(source) and other_streams(output) == other_streams(source)


def test_hevc_in_mp4_is_tagged_for_apple_players(clip_mp4, tmp_path):
    round_trip(clip_mp4, tmp_path / "out.mp4", codec="libx265")
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.codec_tag == "hvc1"


def test_read_frames_depth_16_uses_the_full_range(tmp_path):
    for value, (lo, hi) in ((65535, (65535 - 2 * 257, 65535)), (0, (0, 2 * 257))):
        source = make_clip(tmp_path / f"v{value}.mkv", codec="libx265", pix_fmt="yuv420p10le", frames=4,
                           audio=False, picture=flat((value,) * 3, np.uint16), color_space="bt709",
                           color_range="tv")
        frames = all_frames(source, depth=16)[0]
        assert frames.dtype == np.uint16 and lo <= frames.min() and frames.max() <= hi


@pytest.mark.parametrize("dtype, pix_fmt", [(np.uint16, "yuv420p"), (np.uint8, "yuv420p10le")])
def test_writer_takes_either_depth_into_either_format(clip_mp4, tmp_path, dtype, pix_fmt):
    frames, pts = all_frames(clip_mp4, depth=16 if dtype == np.uint16 else 8)
    info = probe(clip_mp4)
    output = tmp_path / "out.mkv"
    with VideoWriter(output, width=64, height=48, time_base=info.time_base, fps=info.fps, codec="ffv1",
                     pix_fmt=pix_fmt) as writer:  # lossless: only the 4:2:0 chroma and the rounding differ
        writer.write(frames[:3], pts[:3])
    back = all_frames(output)[0].astype(int)
    reference = all_frames(clip_mp4)[0][:3]
    assert probe(output).pix_fmt == pix_fmt and np.abs(back - reference).mean() < 4  # a 4:2:0 round trip: ~3.5


def _info(bit_depth: int, pix_fmt: str) -> VideoInfo:
    return VideoInfo(path="x", container="matroska", width=64, height=48, pix_fmt=pix_fmt, codec="hevc", fps=None,
                     time_base=Fraction(1, 1000), frames=None, duration=None, start_time=0, rotation=0,
                     color_range=None, color_space=None, color_primaries=None, color_trc=None, bit_depth=bit_depth,
                     streams=())


@pytest.mark.parametrize("codec, eight, ten", [
    ("libx264", "yuv420p", "yuv420p10le"),
    ("libx265", "yuv420p", "yuv420p10le"),
    ("libsvtav1", "yuv420p", "yuv420p10le"),
    ("ffv1", "yuv444p", "yuv444p10le"),
    ("hevc_nvenc", "yuv420p", "p010le"),
    ("h264_nvenc", "yuv420p", None),
    ("mpeg4", "yuv420p", None),
])
def test_output_pix_fmt(codec, eight, ten):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg")
    warnings: list[str] = []
    assert output_pix_fmt(_info(8, "yuv420p"), codec, None, warnings) == eight and warnings == []
    assert output_pix_fmt(_info(10, "yuv420p10le"), codec, None, warnings) == (ten or eight)
    assert warnings == ([] if ten else [f"{codec} cannot encode 10-bit video: output is 8-bit {eight} "
                                        "(input is yuv420p10le)"])
    assert output_pix_fmt(_info(10, "yuv420p10le"), codec, "yuv444p") == "yuv444p"  # asked for: as it is


def test_output_pix_fmt_12_bit():
    assert output_pix_fmt(_info(12, "yuv420p12le"), "libx265") == "yuv420p12le"
    assert output_pix_fmt(_info(12, "yuv420p12le"), "libx264") == "yuv420p10le"  # deepest it has


def test_odd_size_clip_is_padded_and_says_so(tmp_path):
    source = make_clip(tmp_path / "odd.mkv", codec="ffv1", size=(63, 47), audio_codec="libopus")
    output = tmp_path / "out.mp4"
    writer = round_trip(source, output, codec="libx264")
    assert writer.warnings == ["odd frame size 63x47 padded to 64x48 (edge pixels repeated; yuv420p needs even "
                               "sizes)"]
    assert (probe(output).width, probe(output).height) == (64, 48)
    assert writer.frames_written == 12 and video_times(output) == video_times(source)
    assert other_streams(output) == other_streams(source)
