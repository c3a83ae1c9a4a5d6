"""vsr.video keeps every stream: audio tracks, subtitles, attachments, data, chapters and tags survive the writer
(copied packet for packet, converted, or named in one warning line), on small real files made with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import FONT_DATA, FONT_MIMETYPE, FONT_NAME, audio_bytes, make_clip, other_streams, video_times

from vsr.video import VideoWriter, probe, read_frames


def describe_file(path) -> dict:
    """What a file says about itself besides the video and packets: streams, dispositions, chapters, tags."""
    with av.open(str(path)) as container:
        return {
            "streams": [(s.type, s.codec, s.language, s.title) for s in probe(path).streams],
            "dispositions": [int(s.disposition) for s in container.streams],
            "chapters": [(c["start"] * c["time_base"], c["end"] * c["time_base"], c["metadata"].get("title"))
                         for c in container.chapters()],
            "tags": {k.lower(): v for k, v in container.metadata.items() if k.lower() in ("title", "comment")},
            "attachments": [(s.metadata.get("filename"), s.metadata.get("mimetype"), bytes(s.data))
                            for s in container.streams if s.type == "attachment"],
        }


def round_trip(source, output, *, scale: int = 2, **kwargs) -> VideoWriter:
    """Read ``source``, "upscale" by pixel repetition, write ``output`` with everything else copied."""
    info = probe(source)
    with VideoWriter(output, width=info.width * scale, height=info.height * scale, time_base=info.time_base,
                     fps=info.fps, source=source, preset="ultrafast", rotation=info.rotation,
                     **{**info.color_tags, **kwargs}) as writer:
        for batch in read_frames(source, batch_size=5, start=kwargs.get("start"), end=kwargs.get("end")):
            writer.write(batch.frames.repeat(scale, axis=1).repeat(scale, axis=2), batch.pts)
    return writer


def decoded_subtitles(path) -> list[tuple[Fraction, str]]:
    """(time, text) of every subtitle event in the first subtitle stream, whatever its format."""
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        events = []
        for packet in container.demux(stream):
            subtitle = stream.codec_context.decode2(packet) if packet.size else None
            for rect in subtitle or ():
                events.append((packet.pts * packet.time_base, rect.ass.decode().rsplit(",", 1)[-1]))
        return events


ALL_STREAMS = {"chapters": 2, "tags": True}
CONTAINERS = {
    "mp4": ({**ALL_STREAMS, "subtitles": ("mov_text",), "audio_tracks": 2}, {}),
    "mkv": ({**ALL_STREAMS, "audio_codec": "libopus", "subtitles": ("ass", "subrip"), "font": True,
             "audio_tracks": 2}, {}),
    "mov": ({**ALL_STREAMS, "subtitles": ("mov_text",)}, {}),
    "webm": ({**ALL_STREAMS, "codec": "libvpx-vp9", "audio_codec": "libopus", "subtitles": ("webvtt",)},
             {"codec": "libvpx-vp9"}),
    "avi": ({"codec": "mpeg4", "audio_codec": "libmp3lame", "tags": True}, {"codec": "mpeg4"}),
    "ts": ({"data": True}, {}),
}


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_round_trip_keeps_every_stream(tmp_path, ext):
    clip_kwargs, writer_kwargs = CONTAINERS[ext]
    source = make_clip(tmp_path / f"in.{ext}", **clip_kwargs)
    output = tmp_path / f"out.{ext}"
    writer = round_trip(source, output, **writer_kwargs)
    assert writer.warnings == []
    assert writer.frames_written == writer.summary.frames == 12
    assert video_times(output) == video_times(source)
    before, after = other_streams(source), other_streams(output)
    assert after == before and all(before.values())  # identical payloads at identical times, none empty
    assert describe_file(output) == describe_file(source)


def test_round_trip_source_really_has_it_all(tmp_path):
    # The MKV case above is only worth something if the clip holds what the issue lists.
    info = describe_file(make_clip(tmp_path / "in.mkv", **CONTAINERS["mkv"][0]))
    assert [s[:3] for s in info["streams"]] == [("video", "h264", None), ("audio", "opus", "eng"),
                                               ("audio", "opus", "fra"), ("subtitle", "ass", "fra"),
                                               ("subtitle", "subrip", "fra"), ("attachment", "unknown", None)]
    assert info["attachments"] == [(FONT_NAME, FONT_MIMETYPE, FONT_DATA)]
    assert [c[2] for c in info["chapters"]] == ["Chapter 1", "Chapter 2"]
    assert info["dispositions"][3] & av.stream.Disposition.forced
    assert info["tags"] == {"title": "vsr test clip", "comment": "made by tests/conftest.py"}


def test_mkv_into_mp4_converts_subtitles_and_names_what_it_drops(tmp_path):
    source = make_clip(tmp_path / "in.mkv", **CONTAINERS["mkv"][0])
    output = tmp_path / "out.mp4"
    writer = round_trip(source, output, scale=1)
    assert writer.warnings == [
        "subtitle stream #3 (ass, fra) converted to mov_text: mp4 cannot hold ass (the text is kept, styling as far "
        "as mov_text has it)",
        "subtitle stream #4 (subrip, fra) converted to mov_text: mp4 cannot hold subrip (the text is kept, styling "
        "as far as mov_text has it)",
        f"attachment stream #5 ({FONT_NAME}, {FONT_MIMETYPE}) not copied: mp4 cannot hold attachments",
    ]
    before, after = describe_file(source), describe_file(output)
    assert [s for s in after["streams"] if s[0] != "data"] == [  # (data: MP4's own chapter track)
        ("video", "h264", "und", None), ("audio", "opus", "eng", None), ("audio", "opus", "fra", "commentary"),
        ("subtitle", "mov_text", "fra", "Subs 0"), ("subtitle", "mov_text", "fra", "Subs 1")]
    assert after["chapters"] == before["chapters"] and after["tags"] == before["tags"]
    assert decoded_subtitles(output) == decoded_subtitles(source) == [(Fraction(12, 100), "Hello 0"),
                                                                      (Fraction(60, 100), "World 0")]
    src, out = other_streams(source), other_streams(output)
    assert out[("audio", 0)] == src[("audio", 0)] and out[("audio", 1)] == src[("audio", 1)]
    assert video_times(output) == video_times(source)


def test_mov_text_into_mkv_becomes_ass(tmp_path):
    source = make_clip(tmp_path / "in.mp4", subtitles=("mov_text",), tags=True)
    writer = round_trip(source, tmp_path / "out.mkv", scale=1)
    assert writer.warnings == ["subtitle stream #2 (mov_text, fra) converted to ass: matroska cannot hold mov_text "
                               "(the text is kept, styling as far as ass has it)"]
    subtitle = probe(tmp_path / "out.mkv").streams[2]
    assert (subtitle.type, subtitle.codec, subtitle.language) == ("subtitle", "ass", "fra")
    assert decoded_subtitles(tmp_path / "out.mkv") == decoded_subtitles(source)


def test_avi_names_everything_it_cannot_hold(tmp_path):
    source = make_clip(tmp_path / "in.mkv", **CONTAINERS["mkv"][0])
    writer = round_trip(source, tmp_path / "out.avi", scale=1, codec="mpeg4")
    assert writer.warnings == [
        "audio stream #1 (opus, eng) not copied: avi cannot hold opus",
        "audio stream #2 (opus, fra) not copied: avi cannot hold opus",
        "subtitle stream #3 (ass, fra) not copied: avi cannot hold ass",
        "subtitle stream #4 (subrip, fra) not copied: avi cannot hold subrip",
        f"attachment stream #5 ({FONT_NAME}, {FONT_MIMETYPE}) not copied: avi cannot hold attachments",
        "2 chapters not kept: avi cannot hold chapters",
    ]
    assert [s.type for s in probe(tmp_path / "out.avi").streams] == ["video"]
    assert describe_file(tmp_path / "out.avi")["tags"] == describe_file(source)["tags"]


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_data_stream_the_container_cannot_hold(tmp_path, ext):
    source = make_clip(tmp_path / "in.ts", data=True)
    writer = round_trip(source, tmp_path / f"out.{ext}", scale=1)
    assert writer.warnings == [f"data stream #2 (klv) not copied: {'matroska' if ext == 'mkv' else ext} "
                               "cannot hold klv"]
    assert audio_bytes(tmp_path / f"out.{ext}") == audio_bytes(source)


def test_dropping_audio_and_subtitles_on_purpose(tmp_path):
    source = make_clip(tmp_path / "in.mkv", **CONTAINERS["mkv"][0])
    writer = round_trip(source, tmp_path / "out.mkv", scale=1, copy_audio=False, copy_subtitles=False)
    assert writer.warnings == []  # asked for: nothing to warn about
    after, before = describe_file(tmp_path / "out.mkv"), describe_file(source)
    assert [s[0] for s in after["streams"]] == ["video", "attachment"]
    assert after["attachments"] == before["attachments"] and after["chapters"] == before["chapters"]


def test_excerpt_cuts_subtitles_and_chapters(tmp_path):
    source = make_clip(tmp_path / "in.mkv", audio_codec="libopus", subtitles=("ass",), chapters=3)
    output = tmp_path / "out.mkv"
    round_trip(source, output, scale=1, start=0.3, end=0.9)
    # Frames 0.3..0.8 s; "Hello" (0.12-0.42 s) is still showing at 0.3 s so it stays, "World" (0.6-1.02 s) too.
    assert video_times(output) == [Fraction(i, 10) for i in range(3, 9)]
    assert [text for _, text in decoded_subtitles(output)] == ["Hello 0", "World 0"]
    chapters = describe_file(output)["chapters"]
    assert chapters == [(Fraction(3, 10), Fraction(4, 10), "Chapter 1"), (Fraction(4, 10), Fraction(8, 10),
                         "Chapter 2"), (Fraction(8, 10), Fraction(9, 10), "Chapter 3")]
    audio = [t for _, t in other_streams(output)[("audio", 0)]]
    assert Fraction(3, 10) <= audio[0] < Fraction(33, 100) and audio[-1] < Fraction(9, 10)

    round_trip(source, tmp_path / "late.mkv", scale=1, start=0.5, end=0.6)
    assert decoded_subtitles(tmp_path / "late.mkv") == []  # "Hello" is over by 0.5 s, "World" starts at 0.6 s


@pytest.mark.parametrize("ext", ["mp4", "mkv", "ts"])
def test_audio_starting_before_zero_keeps_every_timestamp(tmp_path, ext):
    # Real MP4s start AAC/MP3 before 0 (encoder priming). By default Matroska and MPEG-TS muxers would then move
    # every stream, the video included, later; the writer keeps them where they were.
    source = make_clip(tmp_path / "in.mp4", audio_priming=True)
    assert other_streams(source)[("audio", 0)][0][1] < 0
    output = tmp_path / f"out.{ext}"
    writer = round_trip(source, output, scale=1)
    assert writer.warnings == []
    assert video_times(output) == video_times(source)
    before, after = other_streams(source)[("audio", 0)], other_streams(output)[("audio", 0)]
    assert audio_bytes(output) == audio_bytes(source)
    if ext == "ts":  # 90 kHz clock, and the muxer may pack several AAC frames into one packet
        assert abs(after[0][1] - before[0][1]) < Fraction(1, 90000)
    else:
        tolerance = Fraction(1, 1000) if ext == "mkv" else 0  # Matroska: milliseconds
        assert len(after) == len(before) and all(abs(a - b) <= tolerance for (_, a), (_, b) in zip(after, before))


def test_avi_drops_audio_before_zero_rather_than_move_the_video(tmp_path):
    source = make_clip(tmp_path / "in.mp4", audio_priming=True)
    output = tmp_path / "out.avi"
    writer = round_trip(source, output, scale=1, codec="mpeg4")
    assert writer.warnings == ["audio stream #1 (aac): packets before 0s dropped (avi cannot store times before 0)"]
    assert video_times(output) == video_times(source)
    before = [p for p, t in other_streams(source)[("audio", 0)] if t >= 0]
    assert [p for p, _ in other_streams(output)[("audio", 0)]] == before


def test_stream_info_names_codec_less_streams(tmp_path):
    streams = probe(make_clip(tmp_path / "in.ts", data=True, audio=False)).streams
    assert [(s.type, s.codec) for s in streams] == [("video", "h264"), ("data", "klv")]
    mkv = probe(make_clip(tmp_path / "in.mkv", font=True, audio=False, frames=4)).streams
    assert (mkv[1].type, mkv[1].title) == ("attachment", FONT_NAME)


def test_source_without_other_streams(tmp_path):
    source = make_clip(Path(tmp_path) / "in.mp4", audio=False, frames=4)
    writer = round_trip(source, tmp_path / "out.mkv", scale=1)
    assert writer.warnings == [] and [s.type for s in probe(tmp_path / "out.mkv").streams] == ["video"]
