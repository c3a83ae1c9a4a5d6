"""Processes for the container matrix of tests/test_containers.py (a helper, not a test module): every container's
run in one process, so that the matrix pays for one interpreter (and one torchrun group), not one per container.

    python tests/matrix_runs.py resume OUT_DIR SOURCE...
        Runs every source with --resume at once (a thread each) and, once every run has finished a segment and is
        midway through the next, holds them there until the test kills the process with SIGKILL.
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/matrix_runs.py ranks OUT_DIR SOURCE...
        Runs every source across the two ranks with a model that warms up on 3 frames; writes OUT_DIR/ranks-N.json
        with each source's error (None if none) and the frames this rank's model saw.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vsr import models  # noqa: E402
from vsr.errors import VsrError  # noqa: E402
from vsr.pipeline import EnhanceConfig, Upscaler, enhance_video  # noqa: E402

SEGMENT_FRAMES = {"resume": 5, "ranks": 7}
HOLD_AFTER = 7  # frames written before a resume run is held: one segment finished, the next one half written


def output_path(folder: Path, source: Path, tag: str) -> Path:
    # Each input's default output container, but Matroska for AVI (which stores frame numbers, not times).
    suffix = ".mkv" if source.suffix in (".avi", ".h264", ".m2v") else source.suffix
    return folder / f"{tag}_{source.stem}_{source.suffix[1:]}{suffix}"


def config(mode: str) -> EnhanceConfig:
    return EnhanceConfig(device="cpu", precision="fp32", batch_size=1 if mode == "resume" else 3, preset="ultrafast",
                         resume=mode == "resume", segment_frames=SEGMENT_FRAMES[mode])


class WarmNearest(nn.Module):
    """Test-only: a per-frame x2 upscaler that asks for 3 frames of warm-up, as a recurrent model does."""

    scale = 2
    warmup_frames = 3

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))  # something for the resume state's model hash

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(lq, scale_factor=2, mode="nearest") * self.weight


def resume(folder: Path, sources: list[Path]) -> None:
    held = threading.Barrier(len(sources))

    def run(source: Path) -> None:
        written = [0]

        def progress(n: int) -> None:
            written[0] += n
            if written[0] == HOLD_AFTER:
                held.wait()
                while True:  # until SIGKILL
                    time.sleep(60)

        enhance_video(source, output_path(folder, source, "resumed"), models.load_model("bicubic", scale=2),
                      config("resume"), progress=progress)

    threads = [threading.Thread(target=run, args=(source,), daemon=True) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def ranks(folder: Path, sources: list[Path]) -> None:
    from vsr.pipeline import distributed
    from vsr.pipeline import ranks as job

    cfg = config("ranks")
    me = job.start(cfg)
    seen = [0]
    real_call = Upscaler.__call__

    def counting(self, frames):
        seen[0] += len(frames)
        return real_call(self, frames)

    Upscaler.__call__ = counting
    report = {}
    try:
        for source in sources:
            seen[0] = 0
            try:
                distributed.enhance_video_distributed(source, output_path(folder, source, "ranks"), WarmNearest(), cfg,
                                                      me)
                report[source.name] = {"error": None, "model_frames": seen[0]}
            except VsrError as err:
                report[source.name] = {"error": str(err), "model_frames": seen[0]}
    finally:
        (folder / f"ranks-{me.rank}.json").write_text(json.dumps(report))
        job.finish()


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    {"resume": resume, "ranks": ranks}[mode](out, [Path(p) for p in sys.argv[3:]])
