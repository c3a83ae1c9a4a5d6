"""Deinterlacing with FFmpeg's bwdif filter (through PyAV's filter graph), for interlaced DVD, DV and broadcast input.

An interlaced frame holds two fields captured 1/50 or 1/60 s apart; upscaled as a progressive picture, the combing of
every moving edge is scaled up with it. bwdif rebuilds each field into a whole frame (motion-adaptive, with
Bob Weaver's edge-directed interpolation), either one frame per input frame (``frame``: the frame count and pts are
unchanged) or one per field (``field``: twice the frames, each at its field's instant, on a clock of half the input's
time base).
"""

from __future__ import annotations

from fractions import Fraction

import av

from vsr.errors import VsrError

DEINTERLACE_MODES = ("auto", "off", "frame", "field")
# AVFieldOrder codes (codec parameters): progressive 1; the rest say which field is coded / shown first.
_FIELD_ORDERS = {2: "tff", 3: "bff", 4: "tff", 5: "bff"}


def field_order(code: int | None) -> str | None:
    """'tff' / 'bff' for an interlaced AVFieldOrder code, None for progressive or unknown."""
    return _FIELD_ORDERS.get(code or 0)


def deinterlace_plan(mode: str, interlaced: str | None) -> str | None:
    """What to do with a source: "frame", "field" or None (leave it), from ``--deinterlace`` and the probe.

    Args:
        mode: One of :data:`DEINTERLACE_MODES`. ``auto`` deinterlaces at the frame rate where the source is
            interlaced; ``frame``/``field`` always deinterlace; ``off`` never does.
        interlaced: What the probe found: "tff", "bff", "flagged" (frames marked interlaced, field order from the
            frames), or None for progressive.
    """
    if mode not in DEINTERLACE_MODES:
        raise VsrError(f"deinterlace must be one of {', '.join(DEINTERLACE_MODES)}, got {mode!r}")
    if mode == "off" or (mode == "auto" and interlaced is None):
        return None
    return "field" if mode == "field" else "frame"


def output_time_base(time_base: Fraction, plan: str | None) -> Fraction:
    """The clock of the frames a deinterlace ``plan`` gives: half the input's time base for one frame per field."""
    return Fraction(time_base) / 2 if plan == "field" else Fraction(time_base)


class Deinterlacer:
    """bwdif over a stream of decoded frames: call with each frame (pts set, increasing), then with None to flush.

    Args:
        first: The first frame (its size and pixel format configure the filter; later frames must match).
        time_base: The time base of the frames' pts.
        plan: "frame" (one output frame per input frame) or "field" (one per field, pts on ``time_base / 2``).
        interlaced: The probe's finding (see :func:`deinterlace_plan`). "tff"/"bff" set the field order for
            frames that do not carry one; with "flagged" bwdif reads it from each frame, and frames marked
            progressive pass through untouched (mixed DVD content); a forced plan on a source found progressive
            deinterlaces every frame, top field first.
    """

    def __init__(self, first: av.VideoFrame, time_base: Fraction, plan: str, interlaced: str | None):
        parity = {"tff": "tff", "bff": "bff"}.get(interlaced or "", "auto")
        deint = "interlaced" if interlaced == "flagged" else "all"
        if interlaced is None:
            parity = "tff"
        self.graph = av.filter.Graph()
        try:
            source = self.graph.add_buffer(width=first.width, height=first.height, format=first.format.name,
                                           time_base=Fraction(time_base))
            bwdif = self.graph.add("bwdif", f"mode={'send_field' if plan == 'field' else 'send_frame'}"
                                            f":parity={parity}:deint={deint}")
            sink = self.graph.add("buffersink")
            source.link_to(bwdif)
            bwdif.link_to(sink)
            self.graph.configure()
        except (av.FFmpegError, ValueError) as err:
            raise VsrError(f"cannot set up the deinterlacer: {err}") from None
        self.time_base = output_time_base(time_base, plan)

    def __call__(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Push one frame (None: end of stream) and return the frames bwdif has ready, in order."""
        self.graph.push(frame)
        out = []
        while True:
            try:
                frame = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return out
            # bwdif always counts on half the input's time base (also when it sends one frame per frame).
            if frame.time_base and frame.time_base != self.time_base:
                frame.pts = round(frame.pts * frame.time_base / self.time_base)
                frame.time_base = self.time_base
            out.append(frame)
