"""Training sequences: aligned crops of N consecutive frames, degraded as one piece of video.

Sources are the folders `vsr prepare` writes (``<clip>_<index>.png``: frames of one clip in order, so runs of
consecutive indices are real footage) and any other images (photographs, T91), which become sequences by moving a
virtual camera over them: a steady drift plus jitter in whole HR pixels (sub-pixel at LR, the views a video gives
of a still scene) and, half of the time, a patch of the picture moving on its own (an object crossing the scene,
with the occlusions that brings).

The degradation is drawn once per sequence and applied as a video (`Degradation.degrade_clip`): one blur, one
downscale, one recorder for all frames, noise drawn anew per frame, and the codec run over the whole sequence, so
frames after the first carry the inter-frame prediction a DVR's encoder gives them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vsr.data.dataset import PairDataset, image_size, to_tensor
from vsr.data.degrade import Degradation
from vsr.data.images import list_images, load_image
from vsr.errors import VsrError

# `vsr prepare` names frames <clip>_<6-digit index>.png.
_FRAME_NAME = re.compile(r"^(?P<clip>.+)_(?P<index>\d{6})$")


def find_runs(paths: Sequence[Path], frames: int) -> tuple[list[list[Path]], list[Path]]:
    """Splits image paths into runs of consecutive frames of one clip (at least ``frames`` long) and the rest.

    Frames of a clip are consecutive when their indices are evenly spaced at the clip's smallest spacing (a folder
    made with ``--every 2`` holds every other frame: still a sequence, at half the frame rate); a gap splits a run.
    """
    clips: dict[tuple[Path, str], list[tuple[int, Path]]] = {}
    others = []
    for p in paths:
        m = _FRAME_NAME.match(p.stem)
        if m:
            clips.setdefault((p.parent, m["clip"]), []).append((int(m["index"]), p))
        else:
            others.append(p)
    runs = []
    for members in clips.values():
        members.sort()
        steps = np.diff([i for i, _ in members])
        step = int(steps.min()) if len(steps) else 1
        run = [members[0][1]]
        for (i, _), (j, q) in zip(members, members[1:]):
            if j - i != step:
                runs.append(run)
                run = []
            run.append(q)
        runs.append(run)
    short = [p for run in runs if len(run) < frames for p in run]
    return [run for run in runs if len(run) >= frames], others + short


def camera_path(frames: int, scale: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, 2) integer HR offsets of a virtual camera: a drift of up to 1.5 LR pixels per frame plus jitter of
    about a third of an LR pixel, relative to the first frame's position."""
    velocity = rng.uniform(-1.5, 1.5, size=2) * scale
    jitter = np.clip(rng.normal(0.0, scale / 3, size=(frames, 2)), -scale, scale)
    jitter[0] = 0
    return np.rint(np.arange(frames)[:, None] * velocity + jitter).astype(int)


class SequenceDataset(PairDataset):
    """Random (LR, HR) sequences of ``frames`` consecutive frames, aligned crops, degraded as video.

    Each item is a window of a run of real frames (every frame of the runs equally likely) or, with probability
    ``photo_share`` (when there are both), a photograph turned into a sequence (see the module doc). The same
    crop position and the same flip / rotation apply to every frame; a real run is played backwards half of the
    time (motion either way is as likely).

    Args:
        folders: image folders (``vsr prepare`` output and/or photographs) or files; ``holdout`` folders are left out.
        scale: super-resolution factor.
        frames: frames per sequence (N).
        hr_crop: HR crop side, a multiple of ``scale``.
        degradation: LR maker; ``preset="bicubic"`` downscales each frame, ``"realistic"`` records the sequence.
        length: items per epoch; default the number of frames in all runs and photographs.
        seed: base seed of the per-process generators (as PairDataset).
        photo_share: chance that an item comes from a photograph rather than a real run.

    Returns from ``ds[i]``: ``(lq, gt)``, float32 (N, 3, hr_crop // scale, hr_crop // scale) and (N, 3, hr_crop,
    hr_crop) in [0, 1].
    """

    def __init__(self, folders: str | Path | Sequence[str | Path], scale: int, frames: int, hr_crop: int = 96,
                 degradation: Degradation | None = None, length: int | None = None, seed: int = 0,
                 photo_share: float = 0.25) -> None:
        folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
        if frames < 1:
            raise VsrError(f"--frames must be at least 1, got {frames}")
        if hr_crop <= 0 or hr_crop % scale:
            raise VsrError(f"the HR crop ({hr_crop}) must be a positive multiple of the scale ({scale})")
        paths = [p for folder in folders for p in list_images(folder, exclude=("holdout",))]
        if not paths:
            raise VsrError(f"no images (png, jpg, bmp, webp) in {', '.join(str(f) for f in folders)}")
        runs, photos = find_runs(paths, frames)
        self.runs = [run for run in runs if min(image_size(run[0])) >= hr_crop]
        # A photograph needs room for the crop and the camera's travel.
        margin = hr_crop + 2 * int(np.ceil(1.5 * scale * frames + scale))
        self.photos = [p for p in photos if min(image_size(p)) >= margin]
        if not self.runs and not self.photos:
            raise VsrError(f"no sequences of {frames} frames of at least {hr_crop} px and no photographs of at least "
                           f"{margin} px in {', '.join(str(f) for f in folders)}")
        self.paths = [p for run in self.runs for p in run] + self.photos  # what the trainer reports and counts
        self.margin = margin
        windows = np.array([len(run) - frames + 1 for run in self.runs], dtype=np.float64)
        self._run_odds = windows / windows.sum() if len(windows) else None
        self.photo_share = photo_share if self.runs and self.photos else (1.0 if self.photos else 0.0)
        self.frames, self.scale, self.hr_crop = frames, scale, hr_crop
        self.degradation = degradation or Degradation()
        self.length = length or len(self.paths)
        self.seed = seed
        self._images = None
        self._rng = None
        self._rng_key = None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self._generator()
        if rng.random() < self.photo_share:
            gt = self._photo_sequence(self.photos[int(rng.integers(len(self.photos)))], rng)
        else:
            gt = self._real_sequence(rng)
        hflip, vflip, transpose = rng.random(3) < 0.5
        if hflip:
            gt = gt[:, :, ::-1]
        if vflip:
            gt = gt[:, ::-1]
        if transpose:
            gt = gt.transpose(0, 2, 1, 3)
        gt = np.ascontiguousarray(gt)
        lq = self.degradation.degrade_clip(gt, self.scale, rng)
        return torch.stack([to_tensor(f) for f in lq]), torch.stack([to_tensor(f) for f in gt])

    def _real_sequence(self, rng: np.random.Generator) -> np.ndarray:
        run = self.runs[int(rng.choice(len(self.runs), p=self._run_odds))]
        start = int(rng.integers(0, len(run) - self.frames + 1))
        first = load_image(run[start])
        h, w = first.shape[:2]
        c = self.hr_crop
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        frames = [first] + [load_image(p) for p in run[start + 1 : start + self.frames]]
        seq = np.stack([f[top : top + c, left : left + c] for f in frames])
        return seq[::-1] if rng.random() < 0.5 else seq

    def _photo_sequence(self, path: Path, rng: np.random.Generator) -> np.ndarray:
        img = load_image(path)
        h, w = img.shape[:2]
        c, n = self.hr_crop, self.frames
        path_yx = camera_path(n, self.scale, rng)
        low, high = path_yx.min(0), path_yx.max(0)
        top = int(rng.integers(-low[0], h - c - high[0] + 1))
        left = int(rng.integers(-low[1], w - c - high[1] + 1))
        seq = np.stack([img[top + dy : top + dy + c, left + dx : left + dx + c] for dy, dx in path_yx])
        if rng.random() < 0.5:  # an object: a patch of the picture sliding across the crop on its own path
            size = int(rng.integers(c // 4, c // 2 + 1))
            sy, sx = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            patch = img[sy : sy + size, sx : sx + size]
            y0, x0 = rng.integers(0, c - size + 1, size=2)
            motion = rng.uniform(-2.0, 2.0, size=2) * self.scale
            for t in range(n):
                y = int(np.clip(round(y0 + motion[0] * t), 0, c - size))
                x = int(np.clip(round(x0 + motion[1] * t), 0, c - size))
                seq[t, y : y + size, x : x + size] = patch
        return seq
