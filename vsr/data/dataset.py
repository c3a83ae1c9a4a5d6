"""The training dataset of random (LR, HR) crops and its DataLoader."""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vsr.data.degrade import Degradation
from vsr.data.images import list_images, load_image
from vsr.errors import VsrError


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise VsrError(f"cannot read image {path}: {e}") from None


SAMPLE_BY = ("image", "area")


class PairDataset(Dataset):
    """Random (LR, HR) training pairs cut from folders of images, LR made on the fly by a :class:`Degradation`.

    Each item picks an image (``index % number_of_images``, or by area, see ``sample_by``), cuts a random ``hr_crop``
    square, applies a random flip /
    90-degree rotation (the 8 symmetries of the square), then degrades the crop. The crop is a multiple of the scale,
    so LR is exactly ``hr_crop // scale`` pixels and aligned with HR.

    Images smaller than the crop are skipped (listed in ``self.skipped``, with a warning): padding would teach the
    model invented borders and upsampling would teach it blur. If the decoded images fit in ``cache_mb`` they are
    decoded once here, before DataLoader workers fork, so workers share them copy-on-write; otherwise each item
    decodes its file, and memory stays flat however large the folder.

    Randomness comes from a generator seeded by ``(seed, torch.initial_seed(), rank)`` in each process: DataLoader
    gives every worker a different ``torch.initial_seed()`` (drawn from the loader's generator), so workers and
    DDP ranks never repeat each other's crops, and a run is reproducible from its seeds.

    Args:
        folders: One or more image folders (recursive) or image files. ``holdout`` sub-folders are left out.
        scale: Super-resolution factor.
        hr_crop: HR crop size in pixels (96 = 24 LR pixels at x4, as SRGAN); must be a multiple of ``scale``.
        degradation: LR maker; default the paper's bicubic.
        length: Items per epoch; default the number of images.
        seed: Base seed of the per-process generators.
        cache_mb: Preload all images when their decoded size is at most this many MiB.
        sample_by: ``"image"``: every image as often as any other (T91's 91 small pictures then outweigh a few large
            photographs); ``"area"``: an image as often as it has crop positions, so every HR pixel is equally
            likely to be seen, whatever picture it is in.

    Returns from ``ds[i]``: ``(lq, gt)``, float32 tensors (3, hr_crop // scale, hr_crop // scale) and
    (3, hr_crop, hr_crop) in [0, 1].
    """

    def __init__(
        self,
        folders: str | Path | Sequence[str | Path],
        scale: int,
        hr_crop: int = 96,
        degradation: Degradation | None = None,
        length: int | None = None,
        seed: int = 0,
        cache_mb: int = 1024,
        sample_by: str = "image",
    ) -> None:
        folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
        if hr_crop <= 0 or hr_crop % scale:
            raise VsrError(f"the HR crop ({hr_crop}) must be a positive multiple of the scale ({scale})")
        paths = [p for folder in folders for p in list_images(folder, exclude=("holdout",))]
        if not paths:
            raise VsrError(f"no images (png, jpg, bmp, webp) in {', '.join(str(f) for f in folders)}")
        sizes = [image_size(p) for p in paths]
        self.skipped = [p for p, (w, h) in zip(paths, sizes) if min(w, h) < hr_crop]
        kept = [(p, (w, h)) for p, (w, h) in zip(paths, sizes) if min(w, h) >= hr_crop]
        if not kept:
            raise VsrError(f"every training image is smaller than the {hr_crop}-pixel HR crop; use a smaller crop")
        if self.skipped:
            warnings.warn(
                f"skipping {len(self.skipped)} of {len(paths)} images smaller than the {hr_crop}-pixel HR crop "
                f"(e.g. {self.skipped[0]})",
                stacklevel=2,
            )
        if sample_by not in SAMPLE_BY:
            raise VsrError(f"sample_by must be one of {', '.join(SAMPLE_BY)}, not {sample_by!r}")
        self.paths = [p for p, _ in kept]
        self._image_odds = None  # "image": item i takes image i % n
        if sample_by == "area":
            positions = np.array([(w - hr_crop + 1) * (h - hr_crop + 1) for _, (w, h) in kept], dtype=np.float64)
            self._image_odds = positions / positions.sum()
        self.scale = scale
        self.hr_crop = hr_crop
        self.degradation = degradation or Degradation()
        self.length = length or len(self.paths)
        self.seed = seed
        decoded_bytes = sum(w * h * 3 for _, (w, h) in kept)
        self._images = [load_image(p) for p in self.paths] if decoded_bytes <= cache_mb * 2**20 else None
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.length

    def rng_state(self) -> dict | None:
        """This process's augmentation generator state (numpy's ``bit_generator.state``), None before the first item.

        With ``workers=0`` every item is drawn here, so a checkpoint that stores this and restores it with
        :meth:`set_rng_state` resumes the same stream of crops and degradations; worker processes' generators are
        out of its reach.
        """
        return self._rng.bit_generator.state if self._rng is not None else None

    def set_rng_state(self, state: dict) -> None:
        """Continues from a state returned by :meth:`rng_state`, in this process, instead of seeding afresh."""
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        # _generator re-seeds when (pid, torch.initial_seed()) changes; claim this process so it keeps this state.
        self._rng, self._rng_key = rng, (os.getpid(), torch.initial_seed())

    def _generator(self) -> np.random.Generator:
        # Seeded afresh in each new process: a DataLoader worker (new pid, its own torch.initial_seed()), including
        # the new workers that a non-persistent loader starts every epoch.
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:
            dist = torch.distributed
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            self._rng = np.random.default_rng([self.seed, torch.initial_seed(), rank])
            self._rng_key = key
        return self._rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self._generator()
        if self._image_odds is None:
            i = index % len(self.paths)
        else:
            i = int(rng.choice(len(self.paths), p=self._image_odds))
        img = self._images[i] if self._images is not None else load_image(self.paths[i])
        h, w = img.shape[:2]
        c = self.hr_crop
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        gt = img[top : top + c, left : left + c]
        hflip, vflip, transpose = rng.random(3) < 0.5
        if hflip:
            gt = gt[:, ::-1]
        if vflip:
            gt = gt[::-1]
        if transpose:  # with the flips above: all 8 rotations / reflections of the square
            gt = gt.transpose(1, 0, 2)
        gt = np.ascontiguousarray(gt)
        lq = self.degradation(gt, self.scale, rng)
        return to_tensor(lq), to_tensor(gt)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    # Ctrl-C in a terminal, `kill -- -PGID` and Slurm's preemption signal the whole process group. A worker that dies
    # of it makes the trainer's next batch fail before it can write its checkpoint; the trainer stops at a step
    # boundary instead and shuts its workers down (and they exit by themselves if it dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset, batch_size: int, workers: int, distributed: bool = False, seed: int = 0
) -> DataLoader:
    """A shuffling DataLoader for training: full batches only, pinned memory on CUDA, workers kept alive.

    Args:
        dataset: Usually a :class:`PairDataset`.
        batch_size: Samples per batch (per process when distributed).
        workers: DataLoader worker processes; 0 loads in the main process.
        distributed: Shard with a ``DistributedSampler`` (needs an initialised process group). The training loop
            must call ``loader.sampler.set_epoch(epoch)`` each epoch for a new shuffle.
        seed: Seeds the shuffle order and the workers' base seeds, independently of the global torch RNG.

    Raises:
        VsrError: the dataset holds fewer samples than one batch (with ``drop_last`` the loader would be empty).
    """
    per_process = len(dataset) // torch.distributed.get_world_size() if distributed else len(dataset)
    if per_process < batch_size:
        raise VsrError(f"only {per_process} training samples per process, fewer than the batch size {batch_size}")
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True) if distributed else None
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        drop_last=True,
        generator=generator,
        worker_init_fn=_leave_stop_signals_to_the_trainer if workers > 0 else None,
        # Workers start from a clean server process, not a fork of this one: a forked worker inherits whatever
        # this process holds, and a PyAV codec context with slice threads that its garbage collector frees there
        # waits forever for threads the fork did not copy (seen: the test suite hung in a loader's workers).
        multiprocessing_context="forkserver" if workers > 0 else None,
    )
