"""Training and evaluation data: the paper's bicubic downscaling, seeded degradations, frame extraction and datasets.

Images are uint8 (H, W, 3) RGB numpy arrays everywhere in this module; only :class:`PairDataset` turns them into
float tensors. Every random choice draws from an ``np.random.Generator`` the caller passes in (or, in the dataset,
one seeded per worker process), so a degradation is reproducible from its seed.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vsr import video
from vsr.errors import VsrError

__all__ = [
    "IMAGE_EXTS",
    "bicubic_downscale",
    "bicubic_upscale",
    "load_image",
    "Degradation",
    "list_images",
    "prepare_frames",
    "PairDataset",
    "make_loader",
]

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
PRESETS = ("bicubic", "realistic")


# --------------------------------------------------------------------------------------------------- resizing


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    squeeze = img.ndim == 3 and img.shape[2] == 1
    pil = Image.fromarray(img[..., 0] if squeeze else img)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC))
    return out[..., None] if squeeze else out


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscaling: the LR image of the SR papers' protocol (used by training and ``vsr eval``).

    Pillow's BICUBIC resize widens its cubic kernel (a = -0.5) by the scale factor when shrinking, which is what
    MATLAB's ``imresize`` does; on Set5 x4 it reproduces the published bicubic baseline (28.43 dB Y-PSNR).

    Args:
        hr: (H, W, C) or (H, W) uint8 image. If H or W is not a multiple of ``scale``, the bottom/right remainder is
            cropped first (the usual mod-crop), so the output is exactly (H // scale, W // scale).
        scale: Integer downscaling factor.

    Returns:
        uint8 image of shape (H // scale, W // scale, C).
    """
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    return _resize(hr, w // scale, h // scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling (a = -0.5, Pillow), the "bicubic" baseline of SR tables.

    Args:
        lr: (h, w, C) or (h, w) uint8 image.
        scale: Integer upscaling factor.

    Returns:
        uint8 image of shape (h * scale, w * scale, C).
    """
    h, w = lr.shape[:2]
    return _resize(lr, w * scale, h * scale)


def load_image(path: str | Path) -> np.ndarray:
    """Reads an image file as uint8 (H, W, 3) RGB, whatever its mode (grayscale, palette, RGBA, 16-bit).

    EXIF orientation is applied, so the pixels are the picture a viewer shows.

    Raises:
        VsrError: the file is missing or is not a readable image.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I;16"):
                # Pillow's convert("RGB") clips 16-bit values instead of scaling them.
                gray = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise VsrError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VsrError(f"cannot read image {path}: {e}") from None


# --------------------------------------------------------------------------------------------------- degradations


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a uint8 (H, W, C) image, reflected borders, radius 3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    k = len(kernel)
    h, w = img.shape[:2]
    padded = np.pad(img.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[i : i + h] for i in range(k))
    out = sum(kernel[i] * rows[:, i : i + w] for i in range(k))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translates an image by whole pixels, filling the uncovered edge by reflection (a small camera pan)."""
    if dy == 0 and dx == 0:
        return img
    h, w = img.shape[:2]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return np.ascontiguousarray(padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w])


@dataclass(frozen=True)
class _Draw:
    """The random choices of one degradation, drawn once per image (or per clip, so a clip has one camera)."""

    blur_sigma: float
    poisson_peak: float | None  # photons at white; None means Gaussian noise
    noise_sigma: float
    gray_noise: bool
    jpeg_quality: int | None
    crf: int | None


@dataclass
class Degradation:
    """Turns an HR image into its LR input; ``preset="bicubic"`` is the paper, ``"realistic"`` imitates real footage.

    ``realistic`` is, in order: Gaussian blur (random sigma, in HR pixels) -> :func:`bicubic_downscale` -> Gaussian
    or Poisson (shot) noise, optionally the same on all channels -> optional JPEG -> a real H.264 round trip
    (libx264 at a random CRF, through :func:`vsr.video.encode_decode`). Every range and probability is a field; a
    stage is switched off by a zero probability or a zero range (``noise_sigma=(0, 0)``, ``poisson_prob=0``).

    How a single training image meets a *video* codec: :meth:`__call__` encodes a short clip of ``clip_frames``
    frames: ``clip_frames - 1`` copies of the LR image shifted by up to ``max_shift`` pixels (a jittering camera),
    then the LR image itself, and keeps the last decoded frame. That frame is inter-coded (a P-frame predicted from
    its shifted neighbours), so it carries the motion-compensated blocking and ringing of real streams, not only
    the intra-frame artefacts a one-frame clip would give. :meth:`degrade_clip` instead degrades a run of real
    consecutive frames and encodes them together.

    The ``preset="bicubic"`` degradation ignores every other field and the generator.
    """

    preset: str = "bicubic"
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    noise_sigma: tuple[float, float] = (0.0, 10.0)  # Gaussian noise std, in 0..255 units
    poisson_prob: float = 0.3  # chance the noise is Poisson (shot) noise instead of Gaussian
    poisson_peak: tuple[float, float] = (200.0, 2000.0)  # photons at white level: lower = noisier
    gray_noise_prob: float = 0.4  # chance the noise is the same on R, G and B (luma-only sensor noise)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    video_prob: float = 1.0
    crf: tuple[int, int] = (18, 35)
    codec: str = "libx264"
    codec_preset: str = "veryfast"
    clip_frames: int = 3
    max_shift: int = 2

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise VsrError(f"unknown degradation {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        for name in ("blur_sigma", "noise_sigma", "poisson_peak", "jpeg_quality", "crf"):
            low, high = getattr(self, name)
            setattr(self, name, (low, high))  # lists from a TOML config become tuples
            if not 0 <= low <= high:
                raise VsrError(f"degradation range {name}={low},{high} must satisfy 0 <= low <= high")
        for name in ("poisson_prob", "gray_noise_prob", "jpeg_prob", "video_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise VsrError(f"degradation probability {name}={getattr(self, name)} must be in [0, 1]")
        if self.poisson_peak[0] <= 0:
            raise VsrError("degradation range poisson_peak must be above 0")
        if self.clip_frames < 1 or self.max_shift < 0:
            raise VsrError("degradation needs clip_frames >= 1 and max_shift >= 0")

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Degrades one image.

        Args:
            hr: (H, W, 3) uint8 RGB. A bottom/right remainder that is not a multiple of ``scale`` is cropped.
            scale: Downscaling factor.
            rng: Source of every random choice; the same generator state gives the same output.

        Returns:
            (H // scale, W // scale, 3) uint8 RGB.
        """
        if self.preset == "bicubic":
            return bicubic_downscale(hr, scale)
        draw = self._draw(rng)
        lr = self._degrade_frame(hr, scale, draw, rng)
        if draw.crf is None:
            return lr
        # The jitter is drawn even when clip_frames == 1 would not use it, so toggling it keeps other draws aligned.
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=(self.clip_frames - 1, 2))
        clip = np.stack([_shift(lr, int(dy), int(dx)) for dy, dx in shifts] + [lr])
        return self._compress(clip, draw.crf)[-1]

    def degrade_clip(self, frames: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Degrades a run of consecutive frames as one piece of footage.

        Blur, noise level, JPEG quality and CRF are drawn once for the whole clip (one camera, one encoder); the
        noise itself is drawn anew for each frame; the LR frames are then H.264-encoded together, so frames after
        the first are inter-coded against their real neighbours.

        Args:
            frames: (N, H, W, 3) uint8 RGB.
            scale: Downscaling factor.
            rng: Source of every random choice.

        Returns:
            (N, H // scale, W // scale, 3) uint8 RGB.
        """
        if self.preset == "bicubic":
            return np.stack([bicubic_downscale(f, scale) for f in frames])
        draw = self._draw(rng)
        lr = np.stack([self._degrade_frame(f, scale, draw, rng) for f in frames])
        return lr if draw.crf is None else self._compress(lr, draw.crf)

    def _draw(self, rng: np.random.Generator) -> _Draw:
        # A fixed number of draws in a fixed order, whatever the outcome, so results depend only on the seed.
        blur_sigma = rng.uniform(*self.blur_sigma)
        use_poisson = rng.random() < self.poisson_prob
        poisson_peak = rng.uniform(*self.poisson_peak)
        noise_sigma = rng.uniform(*self.noise_sigma)
        gray_noise = rng.random() < self.gray_noise_prob
        use_jpeg = rng.random() < self.jpeg_prob
        jpeg_quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        use_video = rng.random() < self.video_prob
        crf = int(rng.integers(self.crf[0], self.crf[1] + 1))
        return _Draw(
            blur_sigma=blur_sigma,
            poisson_peak=poisson_peak if use_poisson else None,
            noise_sigma=noise_sigma,
            gray_noise=gray_noise,
            jpeg_quality=jpeg_quality if use_jpeg else None,
            crf=crf if use_video else None,
        )

    def _degrade_frame(self, hr: np.ndarray, scale: int, draw: _Draw, rng: np.random.Generator) -> np.ndarray:
        """Blur -> downscale -> noise -> JPEG for one frame (everything but the video codec)."""
        img = _gaussian_blur(hr, draw.blur_sigma) if draw.blur_sigma > 0 else hr
        lr = bicubic_downscale(img, scale).astype(np.float32)
        channels = 1 if draw.gray_noise else lr.shape[2]
        if draw.poisson_peak is not None:
            # Shot noise: photon counts are Poisson with mean proportional to the signal.
            signal = lr.mean(axis=2, keepdims=True) if draw.gray_noise else lr
            photons = signal / 255.0 * draw.poisson_peak
            noise = (rng.poisson(photons) - photons) / draw.poisson_peak * 255.0
        else:
            noise = rng.normal(0.0, 1.0, size=(*lr.shape[:2], channels)).astype(np.float32) * draw.noise_sigma
        out = np.clip(np.rint(lr + noise), 0, 255).astype(np.uint8)
        return _jpeg(out, draw.jpeg_quality) if draw.jpeg_quality is not None else out

    def _compress(self, frames: np.ndarray, crf: int) -> np.ndarray:
        return video.encode_decode(np.ascontiguousarray(frames), codec=self.codec, crf=crf, preset=self.codec_preset)


# --------------------------------------------------------------------------------------------------- files


def list_images(folder: str | Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Image files (png, jpg, jpeg, bmp, webp) under a folder, recursively, sorted; hidden files are skipped.

    Args:
        folder: A folder, or a single image file (returned alone).
        exclude: Names of sub-folders to leave out, e.g. ``("holdout",)`` for a :func:`prepare_frames` folder.

    Raises:
        VsrError: ``folder`` does not exist.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder] if folder.suffix.lower() in IMAGE_EXTS else []
    if not folder.is_dir():
        raise VsrError(f"no such folder: {folder}")
    skip = set(exclude)
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.suffix.lower() not in IMAGE_EXTS or any(p.startswith(".") for p in parts):
            continue
        if skip.intersection(parts[:-1]) or not path.is_file():
            continue
        found.append(path)
    return sorted(found)


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


# --------------------------------------------------------------------------------------------------- dataset


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise VsrError(f"cannot read image {path}: {e}") from None


class PairDataset(Dataset):
    """Random (LR, HR) training pairs cut from folders of images, LR made on the fly by a :class:`Degradation`.

    Each item picks image ``index % number_of_images``, cuts a random ``hr_crop`` square, applies a random flip /
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
    ) -> None:
        folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
        if hr_crop <= 0 or hr_crop % scale:
            raise VsrError(f"the HR crop ({hr_crop}) must be a positive multiple of the scale ({scale})")
        paths = [p for folder in folders for p in list_images(folder, exclude=("holdout",))]
        if not paths:
            raise VsrError(f"no images (png, jpg, bmp, webp) in {', '.join(str(f) for f in folders)}")
        sizes = [_image_size(p) for p in paths]
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
        self.paths = [p for p, _ in kept]
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
        i = index % len(self.paths)
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
        return _to_tensor(lq), _to_tensor(gt)


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
    )
