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
