"""The frame index of a video: every frame a read gives, with its presentation time, known before any decode.

:func:`scan_packets` demuxes the main video stream (packets only: pts, dts, keyframe flag, byte position) and
:func:`packet_times` turns that into the display times `vsr.video.read_frames` gives its frames, by the reader's
own rules (see :func:`~vsr.video.probe.timestamp_source`): the sorted pts where the container has them (MP4, MKV,
MPEG-TS/PS, raw MPEG-2, whose parser times every picture), the nominal rate from 0 where it has none at all (raw
H.264). Where packets cannot tell (AVI's dts-only clock, pts on some packets only, per-frame interlace flags with one
frame per field), `vsr.video.reader.index_video` decodes the timestamps instead, without converting a pixel.

A :class:`FrameIndex` says which frames a range of seconds covers (:meth:`FrameIndex.span`), where to seek for a
frame (:meth:`FrameIndex.seek_points`), is saved as JSON beside a ``--resume`` state, and is what an output is
checked against (:func:`check_times`), independently of the decode that produced the output.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vsr.errors import VsrError
from vsr.video.container import exact_times
from vsr.video.probe import error_text, main_video_stream, open_input

INDEX_VERSION = 1
# Demuxers flagged "no timestamps" (raw elementary streams: .h264, .m2v, .hevc) cannot seek by time.
_NO_TIMESTAMPS = 0x80


@dataclass(frozen=True)
class Packet:
    """One video packet as demuxed, in decode order (times on the input stream's clock; ``pos`` in bytes)."""

    pts: int | None
    dts: int | None
    key: bool
    pos: int | None


@dataclass
class PacketScan:
    """What demuxing the main video stream found: its packets (data only, none an edit list discards) and clock."""

    packets: list[Packet]
    time_base: Fraction
    origin: int  # the stream's start time: read_frames counts ``start``/``end`` seconds from it
    step: int  # one frame at the nominal rate, in time_base ticks (1 where the rate is unknown)
    raw: bool  # an elementary stream without a container clock: no seeking by time
    seeks_by_dts: bool  # the demuxer finds a time by the packets' dts (MPEG-TS/PS), not by its index of pts

    def keyframes(self) -> list[tuple[int, int]]:
        """(display time, time to seek to) of every keyframe, by display time."""
        return sorted((p.pts, p.dts if self.seeks_by_dts and p.dts is not None else p.pts)
                      for p in self.packets if p.key and p.pts is not None)


def scan_packets(path) -> PacketScan:
    """Demuxes every packet of the main video stream of ``path`` (no decoding).

    Raises:
        VsrError: unreadable file, no video stream, or a demux error.
    """
    path = os.fspath(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        time_base = stream.time_base or Fraction(1, 1000)
        step = max(round(1 / (stream.average_rate * time_base)), 1) if stream.average_rate else 1
        packets = []
        try:
            for packet in container.demux(stream):
                # Size 0: flush packets and AVI's dropped-frame placeholders; discard: cut by an MP4 edit list (the
                # decoder drops those frames).
                if packet.size and not packet.is_discard:
                    packets.append(Packet(packet.pts, packet.dts, bool(packet.is_keyframe), packet.pos))
        except av.FFmpegError as err:
            raise VsrError(f"cannot read {path}: {error_text(err)}") from None
        raw = bool(container.format.flags & _NO_TIMESTAMPS)
        # MPEG-TS/PS seek by reading timestamps near the target: to the keyframe's pts lands after its packet.
        by_dts = container.format.name in ("mpegts", "mpeg")
        return PacketScan(packets, time_base, stream.start_time or 0, step, raw, by_dts)


def increasing(times: Sequence[int]) -> list[int]:
    """``times`` with each that does not increase bumped to the previous + 1 (the reader's rule, so the writer can
    encode every frame)."""
    out: list[int] = []
    for t in times:
        out.append(t if not out or t > out[-1] else out[-1] + 1)
    return out


def packet_times(scan: PacketScan, source: str) -> list[int] | None:
    """The display times of the decoded frames, from the packets alone; None where packets cannot tell.

    Args:
        scan: The demuxed packets.
        source: Which frame timestamps the reader uses ("pts" or "dts", from the probe).
    """
    if source != "pts":
        return None  # dts-timed frames carry the dts of the packet that released them: the decoder's delay decides
    pts = [p.pts for p in scan.packets]
    if all(p is None for p in pts):
        return [scan.origin + i * scan.step for i in range(len(pts))]  # no clock at all: the nominal rate from 0
    if any(p is None for p in pts):
        return None
    return increasing(sorted(pts))


def field_times(times: Sequence[int]) -> list[int]:
    """The times of one frame per field (on half the clock) of frames at ``times``: each frame's first field at its
    own time, the second halfway to the next frame (the last frame's, half its predecessor's step later), as
    bwdif gives them."""
    out = []
    for i, t in enumerate(times):
        following = times[i + 1] if i + 1 < len(times) else (2 * t - times[i - 1] if i else t + 1)
        out += [2 * t, t + following]
    return out


def index_identity(path, plan: str | None) -> dict:
    """What an index is made from: the file (path, size, modification time) and the deinterlace plan."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "plan": plan}


@dataclass
class FrameIndex:
    """Every frame a read gives (after deinterlacing), in presentation order.

    Attributes:
        times: Each frame's display time on ``time_base``: exactly the pts `read_frames` gives it.
        time_base: The frames' clock (half the input's for one frame per field).
        input_time_base: The input stream's clock (seeking and ``keyframes`` use it).
        origin: The input stream's start time (on ``input_time_base``): ``start``/``end`` seconds count from it.
        keyframes: (display time, time to seek to) of each keyframe (input clock), ascending: where a decode may
            start.
        seekable: Windows may start at a keyframe seek (the times are packet pts); else they decode from the start.
        source: "packets" (demuxed only) or "decode" (timestamps decoded, where packets could not tell).
        identity: What the index was made from (file path, size, mtime, deinterlace plan), to reuse a saved one.
    """

    times: list[int]
    time_base: Fraction
    input_time_base: Fraction
    origin: int
    keyframes: list[tuple[int, int]]
    seekable: bool
    source: str
    identity: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def fields(self) -> int:
        """Frames per input frame on the output clock: 2 for one frame per field."""
        return round(self.input_time_base / self.time_base)

    def span(self, start: float | None, end: float | None) -> tuple[int, int]:
        """The frames ``[first, stop)`` a read from ``start`` to ``end`` seconds keeps (the reader's rule: from the
        first frame at or after ``start`` to the last before ``end``, both counted from the stream's start)."""
        scale = self.input_time_base / self.time_base
        first, stop = 0, len(self.times)
        if start:
            first = bisect.bisect_left(self.times, (self.origin + start / self.input_time_base) * scale)
        if end is not None:
            stop = bisect.bisect_left(self.times, (self.origin + end / self.input_time_base) * scale)
        return first, max(first, stop)

    def seek_points(self, frame: int) -> list[int]:
        """Keyframe times (input clock) to start a decode at for ``frame``, nearest first: each decodes it unless
        the demuxer lands late (MPEG-TS), when the caller tries the next, earlier one."""
        if not self.seekable or frame <= 0:
            return []
        wanted = self.times[frame] // self.fields
        return [seek for shown, seek in reversed(self.keyframes) if shown <= wanted]

    def seconds(self, frame_time: int) -> float:
        """A frame time as seconds from the stream's start (for messages)."""
        return float(frame_time * self.time_base - self.origin * self.input_time_base)

    def save(self, path) -> None:
        """Writes the index as JSON (the caller makes it atomic)."""
        data = asdict(self)
        data.update(version=INDEX_VERSION, time_base=str(self.time_base), input_time_base=str(self.input_time_base))
        with open(path, "w") as out:
            json.dump(data, out)

    @classmethod
    def load(cls, path, identity: dict) -> FrameIndex | None:
        """A saved index made from ``identity``; None if there is none, it is unreadable or from another file."""
        try:
            with open(path) as saved:
                data = json.load(saved)
            if data.pop("version", None) != INDEX_VERSION or data.get("identity") != identity:
                return None
            data["time_base"] = Fraction(data["time_base"])
            data["input_time_base"] = Fraction(data["input_time_base"])
            data["keyframes"] = [tuple(k) for k in data["keyframes"]]
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None


def output_times(path) -> tuple[list[int], Fraction]:
    """The video frames' pts of a finished output, from its packets (sorted), and their clock."""
    path = os.fspath(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        try:
            times = sorted(p.pts for p in container.demux(stream) if p.size and not p.is_discard and p.pts is not None)
        except av.FFmpegError as err:
            raise VsrError(f"cannot read {path} back: {error_text(err)}") from None
        return times, stream.time_base or Fraction(1, 1000)


def check_times(path, expected: Sequence[int], time_base: Fraction, shift: int = 0, name=None) -> None:
    """Raises VsrError unless the output ``path`` holds exactly the frames ``expected`` (their pts on ``time_base``,
    less ``shift`` ticks as a rebased output stores them), naming the first missing or extra frame.

    Read back from the output's packets, so it is independent of the decode that produced the frames. Times match
    to within half a tick of the coarser clock (Matroska stores milliseconds); a container that keeps frame numbers,
    not times (AVI), is checked by count. ``name`` is the target the file becomes (its suffix names the container;
    default ``path``).
    """
    name = name or path
    exact = exact_times(Path(name))
    got, got_base = output_times(path)
    want = [(t - shift) * Fraction(time_base) for t in expected]
    seen = [t * got_base for t in got]
    if not exact:
        if len(seen) != len(want):
            raise VsrError(f"output check failed: {name} holds {len(seen)} video frames, the source's range has "
                           f"{len(want)}; output discarded")
        return
    tolerance = max(Fraction(time_base), got_base) / 2
    i = j = 0
    while i < len(want) or j < len(seen):
        if i < len(want) and j < len(seen) and abs(want[i] - seen[j]) <= tolerance:
            i, j = i + 1, j + 1
        elif j >= len(seen) or (i < len(want) and want[i] < seen[j]):
            raise VsrError(f"output check failed: {name} lacks frame {i + 1} of {len(want)} (at {float(want[i]):.3f}s "
                           f"of the output); output discarded")
        else:
            raise VsrError(f"output check failed: {name} holds an extra frame at {float(seen[j]):.3f}s (after "
                           f"{i} of the {len(want)} frames of the source's range); output discarded")
