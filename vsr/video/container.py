"""The output file around an encoder: checks before writing, muxer options that keep timestamps exact, and reading
a finished file back (:func:`summarize`) to check it. (The temp file beside the target is `vsr.atomic.create_temp`.)

Used by :class:`~vsr.video.VideoWriter` and :func:`~vsr.video.join_segments`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import VsrError
from vsr.video.probe import error_text, main_video_stream, open_input

@dataclass(frozen=True)
class VideoSummary:
    """A file's main video stream as its packets tell it (read back without decoding).

    ``frames`` counts packets holding data (one per frame in the files vsr writes); pts are in ``time_base``.
    """

    frames: int
    first_pts: int | None
    last_pts: int | None
    time_base: Fraction


def summarize(path) -> VideoSummary:
    """Count the video frames of ``path`` and find its first and last pts, reading packets only (fast)."""
    path = os.fspath(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        frames, first, last = 0, None, None
        try:
            for packet in container.demux(stream):
                # Size 0: flush packets and AVI's dropped-frame placeholders; discard: cut by an MP4 edit list.
                if not packet.size or packet.is_discard:
                    continue
                frames += 1
                if packet.pts is not None:
                    first = packet.pts if first is None else min(first, packet.pts)
                    last = packet.pts if last is None else max(last, packet.pts)
        except av.FFmpegError as err:
            raise VsrError(f"cannot read {path} back: {error_text(err)}") from None
        return VideoSummary(frames, first, last, stream.time_base or Fraction(1, 1000))


def check_summary(summary: VideoSummary, path, *, frames: int, first_pts: int | None, last_pts: int | None,
                  time_base: Fraction, exact: bool = True) -> None:
    """Raise VsrError unless ``summary`` holds ``frames`` frames from ``first_pts`` to ``last_pts`` (in ``time_base``).

    Times are compared in seconds to within half a tick of the coarser clock (Matroska stores milliseconds).
    ``exact=False`` checks the frame count only, for containers whose timestamps are not kept as written (AVI
    stores frame numbers: it cannot hold times before 0, B-frame reordering, or a time base other than 1/fps).
    """
    if summary.frames != frames:
        raise VsrError(f"output check failed: {path} holds {summary.frames} video frames, {frames} were written")
    if not exact:
        return
    tolerance = max(Fraction(time_base), summary.time_base) / 2
    for name, want, got in (("first", first_pts, summary.first_pts), ("last", last_pts, summary.last_pts)):
        if want is None or got is None:
            continue
        want_s, got_s = want * Fraction(time_base), got * summary.time_base
        if abs(want_s - got_s) > tolerance:
            raise VsrError(f"output check failed: the {name} frame of {path} is at {float(got_s):.6f}s, "
                           f"it was written at {float(want_s):.6f}s")


def check_output_path(path: Path, source, overwrite: bool) -> None:
    """Refuse a target that cannot or must not be written, before any work is done."""
    parent = path.parent
    if not parent.is_dir():
        raise VsrError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise VsrError(f"cannot write to folder {parent}: permission denied")
    if path.is_dir():
        raise VsrError(f"output is a folder: {path}")
    if source is not None:
        same = Path(source).resolve() == path.resolve()
        if not same and path.exists() and os.path.exists(source):
            same = os.path.samefile(source, path)  # hard links and other spellings of one file
        if same:
            raise VsrError(f"output is the same file as the input: {path}")
    if path.exists() and not overwrite:
        raise VsrError(f"output file exists: {path} (use --overwrite to replace it)")


# Containers whose muxer keeps every timestamp as given (with the options below). The rest (AVI) cannot store
# times before 0: their muxer would shift every stream when one starts there, as copied audio with encoder
# priming often does, so such packets are dropped instead (see StreamCopier).
EXACT_TIME_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".m2ts", ".mts"}


def exact_times(path: Path) -> bool:
    """Whether the container ``path`` names keeps every pts as written (and times before 0)."""
    return path.suffix.lower() in EXACT_TIME_SUFFIXES


def container_options(path: Path, time_base: Fraction) -> dict[str, str]:
    """Muxer options that keep pts exact."""
    suffix = path.suffix.lower()
    if suffix in (".mp4", ".m4v", ".mov"):
        # MP4/MOV would otherwise pick its own timescale (>= 10000) and renumber every pts. (Negative times are
        # kept through an edit list.)
        return {"video_track_timescale": str(time_base.denominator)} if time_base.numerator == 1 else {}
    if suffix in (".mkv", ".webm"):
        # By default the muxer shifts every stream when one starts before 0 (MP3/AAC priming in copied audio);
        # Matroska stores such times as they are.
        return {"avoid_negative_ts": "disabled"}
    if suffix in (".ts", ".m2ts", ".mts"):
        return {"avoid_negative_ts": "disabled", "mpegts_copyts": "1"}
    return {}


# An encode of at most this many frames gets its decode timestamps checked before muxing (see fix_short_dts).
SHORT_ENCODE = 8


def fix_short_dts(packets: list) -> None:
    """Give a whole (short) encode valid decode timestamps if the encoder's are not.

    libx265 computes its dts offset from the first frames past its B-frame delay; an encode of fewer frames gets
    an uninitialised offset (dts seconds away from the pts, different on every run), which the MP4 muxer refuses
    or writes as a long silent start. Valid means strictly increasing, never after the packet's pts, and starting
    no further before the first frame than the encode lasts (as x264's lead-in does). Otherwise each packet gets
    the earliest pts still to be shown, less one tick per later packet waiting for that same frame.

    Args:
        packets: Every packet of one encode, in decode order (changed in place).
    """
    if not packets:
        return
    pts, dts = [p.pts for p in packets], [p.dts for p in packets]
    span = max(pts) - min(pts)
    if (None not in dts and all(a < b for a, b in zip(dts, dts[1:])) and all(d <= p for d, p in zip(dts, pts))
            and dts[0] >= min(pts) - span):
        return
    firsts = [min(pts[i:]) for i in range(len(pts))]
    for i, packet in enumerate(packets):
        packet.dts = firsts[i] - sum(1 for f in firsts[i + 1:] if f == firsts[i])


def tag_hevc_for_apple(stream, path: Path) -> None:
    """Mark HEVC in MP4/MOV as 'hvc1' (parameter sets in the header), the form Apple's players require; FFmpeg's
    default 'hev1' plays everywhere else only."""
    if stream.codec_context.codec.canonical_name == "hevc" and path.suffix.lower() in (".mp4", ".m4v", ".mov"):
        stream.codec_context.codec_tag = "hvc1"


def close_quietly(*containers) -> None:
    """Close containers of a file that is being thrown away; a failing trailer write does not matter then."""
    for container in containers:
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass
