"""The enhance pipeline: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Knows tensors and threads, not codecs: frames arrive from `vsr.video` as uint8 (or, for 10-bit video, uint16) RGB
batches with their pts, and leave the same way. Every batch carries its pts through unchanged, and frames and the
last pts are checked in == out at the end of every run.

- `enhance.py`: `enhance_video`: the stages wired together, the end-of-run check, the single-file output.
- `stages.py`: threads, bounded queues and pinned host buffers.
- `image.py`: `upscale_image`.
- `resize.py`: `resize_frames` (antialiased bicubic after the model: --outscale, --width/--height), `output_size`.
- `upscaler.py`: `Upscaler` (batching, tiling, out-of-memory and non-finite recovery) and the pre-flight memory fit.
- `resume.py`: `--resume` segments, their manifest and the final join.
- `distributed.py`: under torchrun, one video's segments (or a folder's files) shared out across ranks.
"""

from vsr.pipeline.enhance import EnhanceConfig, EnhanceResult, Interrupted, default_output_path, enhance_video
from vsr.pipeline.image import upscale_image
from vsr.pipeline.resize import output_size, resize_frames
from vsr.pipeline.upscaler import Upscaler, fit_memory

__all__ = [
    "EnhanceConfig",
    "EnhanceResult",
    "Interrupted",
    "Upscaler",
    "fit_memory",
    "default_output_path",
    "enhance_video",
    "output_size",
    "resize_frames",
    "upscale_image",
]
