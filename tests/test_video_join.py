"""vsr.video.join_segments (resume): video-only segments joined with every other stream of the source are equal in
frames, pts and other streams' packets to one uninterrupted VideoWriter run; bad segments are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_clip, other_streams, video_times

from vsr.errors import VsrError
from vsr.video import JoinResult, VideoWriter, join_segments, probe, read_frames, segment_suffix


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def one_shot_and_joined(source, folder: Path, ext: str, *, cuts=(0, 4, 9), start=None, end=None, **kwargs):
    """Encode ``source`` once with a VideoWriter and once as segments starting at frames ``cuts``, then join.

    Returns:
        (one-shot path, its writer, joined path, JoinResult).
    """
    info = probe(source)
    frames = [(b.frames, b.pts) for b in read_frames(source, batch_size=1, start=start, end=end)]
    # Segments get the colour tags too: they decide the RGB->YUV maths and are written into the bitstream.
    settings = {"width": info.width, "height": info.height, "time_base": info.time_base, "fps": info.fps,
                "preset": "ultrafast", **info.color_tags, **kwargs}
    one_shot = folder / f"one{ext}"
    with VideoWriter(one_shot, source=source, start=start, end=end, rotation=info.rotation, **settings) as writer:
        for f, p in frames:
            writer.write(f, p)
    segments, bounds = [], [*cuts, len(frames)]
    for k in range(len(cuts)):
        segment = folder / f"segment{k}{segment_suffix(one_shot)}"
        with VideoWriter(segment, **settings) as seg_writer:  # video only, as the pipeline writes them
            for f, p in frames[bounds[k]: bounds[k + 1]]:
                seg_writer.write(f, p)
        segments.append(segment)
    joined = folder / f"joined{ext}"
    result = join_segments(segments, joined, source=source, time_base=info.time_base, start=start, end=end,
                           rotation=info.rotation, fps=info.fps)
    return one_shot, writer, joined, result


@pytest.mark.parametrize("name, clip_kwargs, ext, writer_kwargs", [
    ("full.mkv", {"audio_codec": "libopus", "subtitles": ("ass",), "font": True, "chapters": 2, "tags": True,
                  "audio_tracks": 2}, ".mkv", {}),
    ("full.mkv", {"audio_codec": "libopus", "subtitles": ("ass",), "font": True, "chapters": 2, "tags": True},
     ".mp4", {}),  # with a conversion and a dropped attachment: same warnings
    ("offset.mp4", {"start": 0.3, "subtitles": ("mov_text",), "audio_priming": True}, ".mp4", {}),
    ("vfr.mp4", {"vfr": True}, ".mkv", {}),
    ("rot.mov", {"rotation": 90, "color_space": "bt709", "color_range": "pc"}, ".mov", {}),
    ("deep.mkv", {"codec": "libx265", "pix_fmt": "yuv420p10le", "audio_codec": "libopus", "frames": 8}, ".mkv",
     {"codec": "libx265", "pix_fmt": "yuv420p10le"}),
])
def test_joined_segments_equal_one_shot(tmp_path, name, clip_kwargs, ext, writer_kwargs):
    source = make_clip(tmp_path / name, **clip_kwargs)
    cuts = (0, 3, 5) if clip_kwargs.get("frames") == 8 else (0, 4, 9)
    one_shot, writer, joined, result = one_shot_and_joined(source, tmp_path, ext, cuts=cuts, **writer_kwargs)
    assert isinstance(result, JoinResult)
    assert (result.frames, result.last_pts, result.warnings) == (writer.frames_written, writer.last_pts,
                                                                 writer.warnings)
    assert video_times(joined) == video_times(one_shot) == video_times(source)
    assert other_streams(joined) == other_streams(one_shot)
    a, b = probe(joined), probe(one_shot)
    assert (a.streams, a.rotation, a.color_tags, a.pix_fmt) == (b.streams, b.rotation, b.color_tags, b.pix_fmt)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_join_b_frames_vfr_and_tiny_segments(tmp_path, codec):
    # B-frames give each segment a lead-in of decode times before its first frame; with irregular frame durations
    # and segments too short for B-frames, those reach back before the previous segment's end and are refitted.
    source = make_clip(tmp_path / "vfr.mkv", vfr=True, audio_codec="libopus")
    one_shot, writer, joined, result = one_shot_and_joined(source, tmp_path, ".mp4", cuts=(0, 5, 6, 8, 11),
                                                           codec=codec, preset="medium")
    assert result.frames == 12 and video_times(joined) == video_times(one_shot) == video_times(source)
    assert [p for b in read_frames(joined) for p in b.pts] == [p for b in read_frames(one_shot) for p in b.pts]
    assert other_streams(joined) == other_streams(one_shot)


def test_joined_excerpt_equals_one_shot(tmp_path):
    source = make_clip(tmp_path / "in.mkv", audio_codec="libopus", subtitles=("ass",), chapters=3)
    one_shot, writer, joined, result = one_shot_and_joined(source, tmp_path, ".mkv", cuts=(0, 2), start=0.3,
                                                           end=0.9)
    assert result.frames == writer.frames_written == 6
    assert video_times(joined) == video_times(one_shot)
    assert other_streams(joined) == other_streams(one_shot)


def _segment(path: Path, frames, **kwargs) -> Path:
    first = frames[0]
    with VideoWriter(path, width=first[0].shape[2], height=first[0].shape[1], time_base=first[2], fps=10,
                     **kwargs) as writer:
        for f, p, _ in frames:
            writer.write(f, p)
    return path


@pytest.fixture
def two_halves(clip_mp4):
    batches = [(b.frames, b.pts, b.time_base) for b in read_frames(clip_mp4, batch_size=6)]
    return clip_mp4, batches[0], batches[1]


def test_join_refuses_segments_encoded_differently(two_halves, tmp_path):
    source, first, second = two_halves
    a = _segment(tmp_path / "a.mp4", [first], preset="ultrafast")
    b = _segment(tmp_path / "b.mp4", [second], preset="medium")  # other x264 settings: other stream headers
    c = _segment(tmp_path / "c.mp4", [(second[0][:, :32], second[1], second[2])], preset="ultrafast")
    with pytest.raises(VsrError, match="encoded with other settings"):
        join_segments([a, b], tmp_path / "out.mp4", source=source, time_base=first[2])
    with pytest.raises(VsrError, match="does not match"):
        join_segments([a, c], tmp_path / "out.mp4", source=source, time_base=first[2])
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_join_refuses_bad_input_and_keeps_the_target(two_halves, tmp_path):
    source, first, second = two_halves
    a = _segment(tmp_path / "a.mp4", [first], preset="ultrafast")
    b = _segment(tmp_path / "b.mp4", [second], preset="ultrafast")
    target = tmp_path / "out.mp4"
    target.write_bytes(b"the user's file")
    cases = [
        ([], {}, "no segments"),
        ([a, tmp_path / "missing.mp4"], {"overwrite": True}, "no such file"),
        ([a, b], {}, "output file exists"),
        ([b, a], {"overwrite": True}, "starts before the previous one ends"),
        ([a, a], {"overwrite": True}, "starts before the previous one ends"),
        ([a, _segment(tmp_path / "b.mkv", [second], preset="ultrafast")], {"overwrite": True}, "not an MP4/MOV"),
    ]
    for segments, kwargs, message in cases:
        with pytest.raises(VsrError, match=message):
            join_segments(segments, target, source=source, time_base=first[2], **kwargs)
        assert target.read_bytes() == b"the user's file" and leftovers(tmp_path) == []
    with pytest.raises(VsrError, match="same file as the input"):
        join_segments([a, b], source, source=source, time_base=first[2], overwrite=True)


def test_join_without_source_and_overwrite(two_halves, tmp_path):
    source, first, second = two_halves
    segments = [_segment(tmp_path / "a.mp4", [first]), _segment(tmp_path / "b.mp4", [second])]
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    result = join_segments(segments, target, source=None, time_base=first[2], overwrite=True)
    assert (result.frames, result.last_pts, result.warnings) == (12, second[1][-1], [])
    assert [s.type for s in probe(target).streams] == ["video"]


def test_segment_suffix():
    assert [segment_suffix(f"x{e}") for e in (".mp4", ".MOV", ".mkv", ".webm", ".avi", ".ts", ".m4v")] == [
        ".mp4", ".mov", ".mp4", ".mp4", ".mp4", ".mp4", ".mp4"]
