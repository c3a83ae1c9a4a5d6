"""The enhance pipeline: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Knows tensors and threads, not codecs: frames arrive from `vsr.video` as uint8 (or, for 10-bit video, uint16) RGB
batches with their pts, and leave the same way. Every batch carries its pts through unchanged, and frames and the
last pts are checked in == out at the end of every run.

- `enhance.py`: `enhance_video`, `upscale_image`, the threads and queues.
- `upscaler.py`: `Upscaler` (batching, tiling, out-of-memory and non-finite recovery) and the pre-flight memory check.
- `resume.py`: `--resume` segments, their manifest and the final join.
"""

from vsr.pipeline.enhance import (
    EnhanceConfig,
    EnhanceResult,
    Interrupted,
    default_output_path,
    enhance_video,
    upscale_image,
)
from vsr.pipeline.upscaler import Upscaler, check_memory

__all__ = [
    "EnhanceConfig",
    "EnhanceResult",
    "Interrupted",
    "Upscaler",
    "check_memory",
    "default_output_path",
    "enhance_video",
    "upscale_image",
]
