"""The enhance pipeline: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Knows tensors and threads, not codecs: frames arrive from `vsr.video` as uint8 (or, for 10-bit video, uint16) RGB
batches with their pts, and leave the same way. Every batch carries its pts through unchanged, and frames and the
last pts are checked in == out at the end of every run.

- `enhance.py`: `enhance_video`: the stages wired together, the end-of-run check, the single-file output.
- `stages.py`: threads, bounded queues and pinned host buffers.
- `image.py`: `upscale_image`.
- `resize.py`: `output_size` (--outscale, --width/--height) and square pixels.
- `memory.py`: the pre-flight memory fit (batch size and tiles that fit before any work starts).
- `Upscaler` and `resize_frames` (running the model on frame batches) live in `vsr.models.runner`, which knows no
  video, so that `evaluate` and `train` run models the same way without importing the pipeline.
- `resume.py`: `--resume` segments, their manifest and the final join.
- `distributed.py`: under torchrun, one video's segments (or a folder's files) shared out across ranks.
"""

from vsr.pipeline.enhance import EnhanceConfig, EnhanceResult, Interrupted, default_output_path, enhance_video
from vsr.pipeline.image import upscale_image
from vsr.models.runner import Upscaler, resize_frames
from vsr.pipeline.memory import fit_memory
from vsr.pipeline.resize import output_size

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
