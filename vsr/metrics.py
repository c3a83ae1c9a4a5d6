"""Image-quality metrics as the super-resolution papers compute them: PSNR and SSIM on the BT.601 Y channel.

The protocol (SRCNN, SRGAN, EDSR and BasicSR all follow it): crop the HR image to a multiple of the scale, make
the LR image by antialiased bicubic downscaling, convert SR and HR to Y in [16, 235] (float, not rounded), crop
``scale`` pixels from every border, then compute PSNR with data range 255 and SSIM with an 11x11 Gaussian window
(sigma 1.5, 'valid' borders) as MATLAB's ``ssim_index`` / BasicSR's ``calculate_ssim``.

For video, :class:`TemporalError` measures how the output changes from frame to frame against how the original
does: the RMS on Y of (SR_t - SR_t-1) - (HR_t - HR_t-1). Unlike an output-only flicker figure (how much the output
changes), it does not reward a blurred or frozen output: missing the original's real motion counts as much as
inventing motion it does not have.

numpy only, so the evaluator and the tests need neither OpenCV nor scikit-image.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rgb_to_y", "psnr", "ssim", "mod_crop", "crop_border", "psnr_ssim_y", "TemporalError", "temporal_error"]

# BT.601 "studio swing" luma for R, G, B in [0, 1], as MATLAB's rgb2ycbcr: Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D normalised Gaussian, equal to ``cv2.getGaussianKernel(11, 1.5)`` and to a row of MATLAB's fspecial."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


_SSIM_WINDOW = _gaussian_kernel()


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Converts an RGB image to the BT.601 luma channel used by SR papers.

    Args:
        img: (H, W, 3) RGB image, uint8 in 0..255 or float in [0, 1]. A 2-D array is taken as grayscale (R = G = B).

    Returns:
        (H, W) float64 array in [16, 235] (not rounded, as BasicSR's ``bgr2ycbcr(..., y_only=True)``).
    """
    img = np.asarray(img)
    rgb = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    if rgb.ndim == 2:
        return 16.0 + _Y_WEIGHTS.sum() * rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image or an (H, W) gray image, got shape {img.shape}")
    return 16.0 + rgb @ _Y_WEIGHTS


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom and right edges so that height and width are multiples of ``scale`` (top-left crop).

    Args:
        img: (H, W) or (H, W, C) array.
        scale: The super-resolution factor.

    Returns:
        A view of ``img`` with shape (H - H % scale, W - W % scale, ...).
    """
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Removes ``border`` pixels from each of the four sides (the SR convention is ``border = scale``)."""
    if border <= 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise ValueError(f"image of size {img.shape[1]}x{img.shape[0]} is too small for a {border}-pixel border crop")
    return img[border:-border, border:-border]


def _check_pair(a: np.ndarray, b: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"expected single-channel (H, W) images such as rgb_to_y's output, got shape {a.shape}")
    return crop_border(a, border), crop_border(b, border)


def psnr(a_y: np.ndarray, b_y: np.ndarray, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB with data range 255.

    Args:
        a_y: (H, W) image in the 0..255 scale, typically ``rgb_to_y`` of the SR output.
        b_y: (H, W) reference image, same scale and shape.
        border: Pixels cropped from each side before comparing.

    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    a, b = _check_pair(a_y, b_y, border)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with 'valid' borders: (H, W) -> (H - k + 1, W - k + 1).

    Summing k shifted slices is exact, cheap for k = 11, and needs no FFT or scipy.
    """
    k = len(kernel)
    rows = sum(kernel[i] * img[i : img.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(kernel[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(a_y: np.ndarray, b_y: np.ndarray, border: int = 0) -> float:
    """Structural similarity (Wang et al. 2004) as MATLAB's ``ssim_index`` and BasicSR's ``calculate_ssim``.

    Gaussian 11x11 window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, statistics only where the window
    fits inside the image ('valid'), no downsampling.

    Args:
        a_y: (H, W) image in the 0..255 scale, typically ``rgb_to_y`` of the SR output.
        b_y: (H, W) reference image, same scale and shape.
        border: Pixels cropped from each side before comparing.

    Returns:
        Mean SSIM over the valid windows; 1.0 for identical images.
    """
    a, b = _check_pair(a_y, b_y, border)
    if min(a.shape) < len(_SSIM_WINDOW):
        raise ValueError(f"SSIM needs at least {len(_SSIM_WINDOW)}x{len(_SSIM_WINDOW)} pixels, got {a.shape}")
    mu_a = _filter_valid(a, _SSIM_WINDOW)
    mu_b = _filter_valid(b, _SSIM_WINDOW)
    var_a = _filter_valid(a * a, _SSIM_WINDOW) - mu_a**2
    var_b = _filter_valid(b * b, _SSIM_WINDOW) - mu_b**2
    cov = _filter_valid(a * b, _SSIM_WINDOW) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return float(ssim_map.mean())


def psnr_ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float]:
    """PSNR and SSIM of two RGB images on the Y channel, the paper protocol in one call.

    Args:
        sr: (H, W, 3) RGB output, uint8 (preferred: what a saved image holds) or float in [0, 1].
        hr: (H, W, 3) RGB reference, already mod-cropped to the scale.
        border: Pixels cropped from each side; the SR convention is the scale factor.

    Returns:
        ``(psnr_db, ssim)``.
    """
    sr_y, hr_y = rgb_to_y(sr), rgb_to_y(hr)
    return psnr(sr_y, hr_y, border), ssim(sr_y, hr_y, border)


def sharpness(y: np.ndarray) -> tuple[float, float]:
    """(mean squared gradient, variance of the 4-neighbour Laplacian) of a Y plane in 0..255.

    No-reference: it says how much high-frequency content an image has, not whether it is right (noise raises it
    too), so it compares outputs of one input with each other or with the HR image, next to PSNR.
    """
    y = y.astype(np.float64)
    gx = np.diff(y, axis=1)[:-1, :]
    gy = np.diff(y, axis=0)[:, :-1]
    laplacian = y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4 * y[1:-1, 1:-1]
    return float(np.mean(gx**2 + gy**2)), float(laplacian.var())


class TemporalError:
    """Temporal error against the truth, fed one frame at a time: RMS on Y of (SR_t - SR_t-1) - (HR_t - HR_t-1).

    Pooled over every pixel of every frame pair (t >= 1), in grey levels of the 0..255 Y scale; 0 means the output
    changes exactly as the original does. Frames must come in presentation order; :meth:`reset` between clips, so
    that the first frame of the next one is not compared with the last of this one.

    Beside it, ``flicker`` keeps the older, secondary figure: the mean absolute value of the same difference.

    Args:
        border: Pixels cropped from each side before comparing (the SR convention: the scale).
    """

    def __init__(self, border: int = 0) -> None:
        self.border = border
        self.pairs = 0
        self._sum_sq = 0.0  # sum over pairs of the pair's mean squared difference
        self._sum_abs = 0.0  # sum over pairs of the pair's mean absolute difference
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        """Forgets the last frame: the next one starts a new clip (the pairs scored so far are kept)."""
        self._previous = None

    def update(self, sr_y: np.ndarray, hr_y: np.ndarray) -> None:
        """Adds the next frame of the clip.

        Args:
            sr_y: (H, W) Y of the output frame, 0..255 scale (``rgb_to_y``), not yet border-cropped.
            hr_y: (H, W) Y of the original frame, same shape.
        """
        sr, hr = _check_pair(sr_y, hr_y, self.border)
        if self._previous is not None:
            if self._previous[0].shape != sr.shape:
                raise ValueError(f"frame size changed within a clip: {self._previous[0].shape} -> {sr.shape}")
            diff = (sr - self._previous[0]) - (hr - self._previous[1])
            self._sum_sq += float(np.mean(diff * diff))
            self._sum_abs += float(np.mean(np.abs(diff)))
            self.pairs += 1
        self._previous = (sr, hr)

    @property
    def rms(self) -> float | None:
        """The temporal error in grey levels (every pair has as many pixels, so the mean of the pairs' mean squares
        is the pooled one); None before two frames of one clip were seen."""
        return math.sqrt(self._sum_sq / self.pairs) if self.pairs else None

    @property
    def flicker(self) -> float | None:
        """Mean |(SR_t - SR_t-1) - (HR_t - HR_t-1)| in grey levels, the secondary figure; None as :attr:`rms`."""
        return self._sum_abs / self.pairs if self.pairs else None


def temporal_error(sr_y: np.ndarray, hr_y: np.ndarray, border: int = 0) -> float:
    """RMS on Y of (SR_t - SR_t-1) - (HR_t - HR_t-1) over one clip (see :class:`TemporalError`).

    Args:
        sr_y: (T, H, W) Y planes of the output frames in presentation order, 0..255 scale.
        hr_y: (T, H, W) Y planes of the original frames.
        border: Pixels cropped from each side before comparing.

    Returns:
        The error in grey levels.

    Raises:
        ValueError: fewer than two frames, or shapes that differ.
    """
    if len(sr_y) != len(hr_y):
        raise ValueError(f"{len(sr_y)} output frames against {len(hr_y)} original frames")
    if len(sr_y) < 2:
        raise ValueError("a temporal error needs at least two frames")
    meter = TemporalError(border)
    for sr, hr in zip(sr_y, hr_y):
        meter.update(sr, hr)
    return meter.rms
