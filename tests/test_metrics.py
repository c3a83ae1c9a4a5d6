"""Y-channel PSNR/SSIM against hand-computed values, a brute-force SSIM, and the published Set5 bicubic figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vsr.data import bicubic_downscale, bicubic_upscale, load_image
from vsr import metrics
from vsr.metrics import crop_border, mod_crop, psnr, psnr_ssim_y, rgb_to_y, ssim

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"


def _smooth_image(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 128 + 60 * np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None] + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_rgb_to_y_bt601_range():
    assert rgb_to_y(np.zeros((2, 2, 3), np.uint8)) == pytest.approx(np.full((2, 2), 16.0))
    assert rgb_to_y(np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(np.full((2, 2), 235.0))
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert rgb_to_y(red)[0, 0] == pytest.approx(16 + 65.481)


def test_rgb_to_y_uint8_float_and_gray_agree():
    img = _smooth_image()
    y = rgb_to_y(img)
    assert y.dtype == np.float64 and y.shape == img.shape[:2]
    np.testing.assert_allclose(rgb_to_y(img / 255.0), y)
    gray = img[..., 0]
    np.testing.assert_allclose(rgb_to_y(gray), rgb_to_y(np.repeat(gray[..., None], 3, axis=2)))
    with pytest.raises(ValueError):
        rgb_to_y(np.zeros((4, 4, 4), np.uint8))


def test_psnr_hand_computed():
    a = np.zeros((16, 16))
    b = np.full((16, 16), 5.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))
    # Only the border differs: cropping it leaves identical images.
    c = a.copy()
    c[0, :] = 100
    assert psnr(a, c, border=1) == math.inf
    assert psnr(a, c) == pytest.approx(10 * math.log10(255**2 / (100**2 * 16 / 256)))
    with pytest.raises(ValueError):
        psnr(a, b[:8])


def _ssim_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM straight from Wang et al.'s formula with an explicit 2-D window at every valid position."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    wa = np.lib.stride_tricks.sliding_window_view(a, (11, 11))
    wb = np.lib.stride_tricks.sliding_window_view(b, (11, 11))
    mu_a = np.einsum("ijkl,kl->ij", wa, window)
    mu_b = np.einsum("ijkl,kl->ij", wb, window)
    var_a = np.einsum("ijkl,kl->ij", (wa - mu_a[..., None, None]) ** 2, window)
    var_b = np.einsum("ijkl,kl->ij", (wb - mu_b[..., None, None]) ** 2, window)
    cov = np.einsum("ijkl,kl->ij", (wa - mu_a[..., None, None]) * (wb - mu_b[..., None, None]), window)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def test_ssim_matches_brute_force_and_is_symmetric():
    a = rgb_to_y(_smooth_image(seed=1))
    b = rgb_to_y(_smooth_image(seed=2))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) == pytest.approx(_ssim_brute_force(a, b), abs=1e-9)
    assert ssim(a, b, border=4) == pytest.approx(_ssim_brute_force(a[4:-4, 4:-4], b[4:-4, 4:-4]), abs=1e-9)
    assert ssim(a, b) < 0.99
    with pytest.raises(ValueError):
        ssim(a[:10, :10], b[:10, :10])


def test_mod_crop_and_crop_border():
    img = np.zeros((101, 67, 3), np.uint8)
    assert mod_crop(img, 4).shape == (100, 64, 3)
    assert mod_crop(img[..., 0], 3).shape == (99, 66)
    assert crop_border(img, 4).shape == (93, 59, 3)
    assert crop_border(img, 0) is img


@pytest.mark.skipif(not (BENCHMARKS / "Set5").is_dir(), reason="shared Set5 not present")
def test_set5_bicubic_x4_matches_published_figure():
    # Published bicubic x4 on Set5 (Y, border 4, MATLAB imresize): 28.42-28.43 dB, SSIM 0.8104.
    psnrs, ssims = [], []
    for path in sorted((BENCHMARKS / "Set5").glob("*.png")):
        hr = mod_crop(load_image(path), 4)
        sr = bicubic_upscale(bicubic_downscale(hr, 4), 4)
        p, s = psnr_ssim_y(sr, hr, border=4)
        psnrs.append(p)
        ssims.append(s)
    assert len(psnrs) == 5
    assert np.mean(psnrs) == pytest.approx(28.425, abs=0.05)
    assert np.mean(ssims) == pytest.approx(0.8104, abs=0.005)


@pytest.mark.skipif(not (BENCHMARKS / "Set14").is_dir(), reason="shared Set14 not present")
def test_grayscale_benchmark_image_loads_as_rgb():
    img = load_image(BENCHMARKS / "Set14" / "bridge.png")  # stored as mode L
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 2])
    y = rgb_to_y(img)
    assert 16 <= y.min() and y.max() <= 235


def test_sharpness_is_zero_on_flat_images_and_drops_with_blur():
    flat = np.full((32, 32), 100.0)
    assert metrics.sharpness(flat) == (0.0, 0.0)
    rng = np.random.default_rng(0)
    detailed = rng.uniform(0, 255, (64, 64))
    blurred = (detailed + np.roll(detailed, 1, 0) + np.roll(detailed, 1, 1) + np.roll(detailed, (1, 1), (0, 1))) / 4
    sharp_g, sharp_l = metrics.sharpness(detailed)
    blur_g, blur_l = metrics.sharpness(blurred)
    assert blur_g < sharp_g / 2 and blur_l < sharp_l / 2


def _clip(values: list[float], shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """(T, H, W) frames, each one flat grey level."""
    return np.stack([np.full(shape, v, dtype=np.float64) for v in values])


def test_temporal_error_hand_computed():
    hr = _clip([100, 110, 120, 130])
    # The output changes exactly as the original does (a constant offset is not a temporal error): 0.
    assert metrics.temporal_error(hr + 7, hr) == 0
    # A frozen output against an original that brightens 10 levels a frame: every pair misses 10 levels.
    assert metrics.temporal_error(_clip([100] * 4), hr) == pytest.approx(10)
    # An output that blinks by 6 over a still original: every change is +-6, and the error sees it.
    still = _clip([100] * 4)
    assert metrics.temporal_error(_clip([100, 106, 100, 106]), still) == pytest.approx(6)
    # Pairs of different size are pooled as one RMS: sqrt((3^2 + 4^2) / 2), not (3 + 4) / 2.
    assert metrics.temporal_error(_clip([0, 3, 7]), _clip([0, 0, 0])) == pytest.approx(math.sqrt(12.5))
    # Within a pair the pixels pool too: differences 3, -4, 0, 0 give sqrt(25 / 4) = 2.5, flicker 7 / 4.
    sr = np.zeros((2, 2, 2))
    sr[1] = [[3, -4], [0, 0]]
    meter = metrics.TemporalError()
    for s, h in zip(sr, np.zeros((2, 2, 2))):
        meter.update(s, h)
    assert meter.pairs == 1 and meter.rms == pytest.approx(2.5) and meter.flicker == pytest.approx(1.75)


def test_temporal_error_border_reset_and_bad_input():
    hr = _clip([50, 50, 50], shape=(6, 6))
    sr = hr.copy()
    sr[1, 0, :] = 200  # a flash on the top row of the middle frame only
    assert metrics.temporal_error(sr, hr) > 0
    assert metrics.temporal_error(sr, hr, border=1) == 0  # it lies in the border
    # reset() starts a new clip: the jump from one clip's last frame to the next one's first is not a pair.
    meter = metrics.TemporalError()
    for s, h in zip(_clip([10, 10]), _clip([10, 10])):
        meter.update(s, h)
    meter.reset()
    for s, h in zip(_clip([200, 200]), _clip([10, 10])):
        meter.update(s, h)
    assert meter.pairs == 2 and meter.rms == 0
    assert metrics.TemporalError().rms is None and metrics.TemporalError().flicker is None
    with pytest.raises(ValueError, match="two frames"):
        metrics.temporal_error(hr[:1], hr[:1])
    with pytest.raises(ValueError):
        metrics.temporal_error(hr, hr[:2])
    with pytest.raises(ValueError, match="size changed"):
        meter.update(np.zeros((3, 3)), np.zeros((3, 3)))


def test_temporal_error_does_not_reward_blur():
    # A bar moving 2 px a frame: a blurred copy changes less from frame to frame than the original (an output-only
    # flicker figure would call that better) but misses part of the real change, so its temporal error is not 0.
    frames = np.zeros((5, 16, 32))
    for t in range(5):
        frames[t, :, 4 + 2 * t : 8 + 2 * t] = 200
    kernel = np.ones(5) / 5
    blurred = np.stack([np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, f) for f in frames])
    output_change = np.sqrt(np.mean(np.diff(blurred, axis=0) ** 2))
    hr_change = np.sqrt(np.mean(np.diff(frames, axis=0) ** 2))
    assert output_change < hr_change
    assert metrics.temporal_error(blurred, frames) > 0.3 * hr_change
    assert metrics.temporal_error(frames, frames) == 0
