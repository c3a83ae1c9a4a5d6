"""Decoding video clips once into folders of PNG frames (`vsr prepare`), with an optional holdout split per clip."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from PIL import Image

from vsr import video
from vsr.errors import VsrError


def _list_clips(clips: Path) -> list[Path]:
    if clips.is_file():
        return [clips]
    if not clips.is_dir():
        raise VsrError(f"no such file or folder: {clips}")
    found = sorted(
        p
        for p in clips.rglob("*")
        if p.suffix.lower() in video.VIDEO_EXTS and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        raise VsrError(f"no video clips in {clips} (looked for {', '.join(sorted(video.VIDEO_EXTS))})")
    return found


def _count_frames(path: Path) -> int:
    info = video.probe(path)
    if info.frames:
        return info.frames
    # The container does not say (Matroska, WebM): count by decoding, the only exact way.
    with closing(video.read_frames(path)) as batches:
        return sum(len(b.frames) for b in batches)


def prepare_frames(
    clips_dir: str | Path,
    out_dir: str | Path,
    every: int = 1,
    max_frames: int | None = None,
    holdout: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Decodes video clips once into a folder of PNG frames, so training epochs do not decode video.

    Frames go to ``out_dir/train/<clip>_<index>.png`` (``index`` is the frame's position in its clip, 6 digits;
    ``<clip>`` is the clip's path below ``clips_dir`` without extension, "/" replaced by "_"). With ``holdout > 0``
    the last ``holdout`` fraction of each clip's frames goes to ``out_dir/holdout/`` instead: a validation split
    from later footage, not interleaved with training frames. Existing files of the same name are overwritten.

    Args:
        clips_dir: A folder of clips (searched recursively, any of ``vsr.video.VIDEO_EXTS``) or one clip file.
        out_dir: Output folder; created if needed.
        every: Keep every N-th frame (1 = all).
        max_frames: At most this many frames per clip (train and holdout together; the holdout part gets
            ``round(max_frames * holdout)``, at least 1). Per clip so that every clip is represented.
        holdout: Fraction in [0, 1) of each clip, taken from its end, written to ``holdout/``.
        progress: Called with the number of frames just written (e.g. ``tqdm.update``).

    Returns:
        The number of PNG files written.

    Raises:
        VsrError: no clips, bad arguments, or a clip that cannot be decoded.
    """
    if every < 1:
        raise VsrError(f"--every must be at least 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise VsrError(f"--max-frames must be at least 1, got {max_frames}")
    if not 0.0 <= holdout < 1.0:
        raise VsrError(f"--holdout must be in [0, 1), got {holdout}")
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    clips = _list_clips(clips_dir)
    dirs = {"train": out_dir / "train", "holdout": out_dir / "holdout"}
    dirs["train"].mkdir(parents=True, exist_ok=True)
    if holdout > 0:
        dirs["holdout"].mkdir(parents=True, exist_ok=True)

    written = 0
    for clip in clips:
        name = "_".join(clip.relative_to(clips_dir).with_suffix("").parts) if clips_dir.is_dir() else clip.stem
        split = math.inf
        caps = {"train": max_frames or math.inf, "holdout": 0}
        if holdout > 0:
            total = _count_frames(clip)
            split = total - max(1, round(total * holdout))
            caps["holdout"] = max(1, round(max_frames * holdout)) if max_frames else math.inf
            caps["train"] = max_frames - caps["holdout"] if max_frames else math.inf
        counts = {"train": 0, "holdout": 0}
        index = 0
        with closing(video.read_frames(clip)) as batches:
            for batch in batches:
                for frame in batch.frames:
                    part = "holdout" if index >= split else "train"
                    if index % every == 0 and counts[part] < caps[part]:
                        # compress_level 1: several times faster than the default and only slightly larger.
                        Image.fromarray(frame).save(dirs[part] / f"{name}_{index:06d}.png", compress_level=1)
                        counts[part] += 1
                        written += 1
                        if progress is not None:
                            progress(1)
                    index += 1
                if all(counts[p] >= caps[p] for p in caps):
                    break
    return written
