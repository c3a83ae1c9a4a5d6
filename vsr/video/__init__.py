"""Video I/O with PyAV (no torch): probe a file, decode it into RGB batches that carry each frame's pts, and write
upscaled frames back with those pts, the input's colour tags, rotation and bit depth, and every other stream of
the input (audio, subtitles, attachments, data, chapters, tags) copied packet for packet.

Modules: :mod:`~vsr.video.probe` (VideoInfo), :mod:`~vsr.video.reader` (read_frames, index_video),
:mod:`~vsr.video.index` (FrameIndex: every frame's pts from the packets; check_times), :mod:`~vsr.video.codecs`
(encoders, container defaults, output_pix_fmt, encode_decode), :mod:`~vsr.video.colour` (tags and YUV<->RGB
maths), :mod:`~vsr.video.deinterlace` (bwdif for interlaced sources),
:mod:`~vsr.video.streams` (copying the other streams), :mod:`~vsr.video.writer` (VideoWriter), :mod:`~vsr.video.container` (temp files, muxer options, read-back checks),
:mod:`~vsr.video.join` (joining separately encoded segments, for resume).
"""

from vsr.video.codecs import (
    CODECS,
    available_codecs,
    default_codec,
    default_output_suffix,
    check_encoder_options,
    default_pix_fmt,
    encode_decode,
    output_pix_fmt,
    user_encoder_options,
)
from vsr.video.colour import pix_fmt_bits
from vsr.video.deinterlace import DEINTERLACE_MODES, deinterlace_plan, output_time_base
from vsr.video.join import JoinResult, join_segments, segment_suffix
from vsr.video.probe import IMAGE_EXTS, VIDEO_EXTS, StreamInfo, VideoInfo, probe
from vsr.video.index import FrameIndex, check_times, index_identity
from vsr.video.reader import FrameBatch, index_video, read_frames
from vsr.video.container import VideoSummary, check_output_path, summarize
from vsr.video.writer import FrameSettings, VideoWriter

__all__ = [
    "CODECS", "DEINTERLACE_MODES", "IMAGE_EXTS", "VIDEO_EXTS", "FrameBatch", "FrameIndex", "FrameSettings",
    "JoinResult", "StreamInfo", "VideoInfo", "VideoSummary", "VideoWriter", "available_codecs", "check_output_path",
    "check_times", "default_codec", "default_output_suffix", "default_pix_fmt", "deinterlace_plan", "encode_decode",
    "index_identity", "index_video", "join_segments", "output_pix_fmt", "output_time_base", "pix_fmt_bits", "probe",
    "read_frames", "segment_suffix", "summarize", "check_encoder_options", "user_encoder_options",
]
