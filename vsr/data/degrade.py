"""Degradations: how an HR image becomes its LR input, the paper's bicubic downscale or a seeded "realistic" chain
of blur, noise, JPEG and a real H.264 round trip."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vsr import video
from vsr.data.images import bicubic_downscale
from vsr.errors import VsrError

PRESETS = ("bicubic", "realistic")


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
