"""The enhance pipeline: decode thread -> bounded queue -> device -> model -> host -> bounded queue -> encode thread.

Knows tensors and threads, not codecs: frames arrive from `vsr.video` as uint8 (or, for 10-bit video, uint16) RGB
batches with their pts, and leave the same way. Every batch carries its pts through unchanged, and frames and the
last pts are checked in == out at the end of every run.

- `plan.py`: `EnhanceConfig`, and `plan_run`: what a run decides before the first frame (`RunPlan`), using
  `memory.py` (the pre-flight memory fit: a batch and tiles that fit) and `resize.py` (output size, square pixels).
- `sinks.py`: where the frames go (`FrameSink`): the target file, or `--resume` segments (`resume.py`: their state
  folder, manifest and lock).
- `enhance.py`: `enhance_video`: plan -> sink -> decode / model / encode stages -> the end-of-run check; the plumbing
  between the stages (threads, bounded queues, pinned host buffers) is `stages.py`.
- `distributed.py`: under torchrun, one video's segments (or a folder's files) shared out across ranks;
  `ranks.py`: the torchrun job (this rank, the process group, shares, the final barrier).
- `image.py`: `upscale_image`.
- `folder.py`: many files in one run (`run_files`): every file attempted, a result each, a JSON report.
- `estimate.py`: how long a run will take (`RunClock`, during it) and `vsr enhance --estimate` (a measured sample).

Running the model on frame batches (`Upscaler`, `resize_frames`) is `vsr.models.runner`, which knows no video, so
that `evaluate` and `train` run models exactly as `enhance` does without importing the pipeline.
"""

from vsr.models.runner import Upscaler, resize_frames
from vsr.pipeline.enhance import EnhanceResult, Interrupted, enhance_video
from vsr.pipeline.image import upscale_image
from vsr.pipeline.memory import fit_memory
from vsr.pipeline.plan import EnhanceConfig, default_output_path
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
