"""Images done right: one reader for enhance, eval and training (16-bit kept, EXIF orientation applied, alpha kept),
`vsr enhance` on images keeps what the output format can hold, --quality, and the format follows the extension."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsr import data
from vsr.cli import cli
from vsr.video.stills import write_png16


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def ramp16(height=12, width=16) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 4000, y * 5000, np.full_like(x, 30000)], axis=-1)
    return rgb.astype(np.uint16)


def test_16_bit_png_is_read_and_written_at_16_bits(tmp_path):
    src = tmp_path / "deep.png"
    write_png16(src, ramp16())
    picture = data.read_image(src)
    assert picture.rgb.dtype == np.uint16 and picture.rgb[0, 0, 2] == 30000  # not clipped to 255 or cut to 8 bits
    out = tmp_path / "deep_x2.png"
    ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu"))
    result = data.read_image(out)
    assert result.rgb.dtype == np.uint16 and result.rgb.shape == (24, 32, 3)
    assert abs(int(result.rgb[10, 10, 2]) - 30000) <= 1  # a flat channel stays at its 16-bit level
    assert (result.rgb % 257 != 0).mean() > 0.5  # levels between 8-bit ones (x 257): the 16 bits went through


def test_16_bit_grey_png_and_training_s_8_bits(tmp_path):
    src = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16)).save(src)  # Pillow's I;16
    assert data.read_image(src).rgb.dtype == np.uint16
    assert (data.read_image(src).rgb == 30000).all()
    assert (data.load_image(src) == 117).all()  # 30000 / 65535 * 255 = 116.7, rounded (not clipped to 255)


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255  # a white band on the left of the stored pixels
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(img).save(src, exif=exif, quality=95)
    picture = data.read_image(src)
    assert picture.rgb.shape == (40, 20, 3)
    assert picture.rgb[:10].mean() > 200 and picture.rgb[-10:].mean() < 50  # the band is now on top
    out = tmp_path / "phone_x2.png"
    ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu"))
    with Image.open(out) as im:
        assert im.size == (40, 80)


def _rgba(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[:, 8:, 3] = 0  # right half transparent
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    return src


def test_alpha_is_upscaled_and_written_back(tmp_path):
    src = _rgba(tmp_path)
    out = tmp_path / "logo_x2.png"
    ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu"))
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (32, 32)
        alpha = np.asarray(im)[..., 3]
    assert (alpha[:, :12] == 255).all() and (alpha[:, 20:] == 0).all()


def test_alpha_into_jpeg_is_dropped_with_a_warning(tmp_path):
    src = _rgba(tmp_path)
    out = tmp_path / "logo.jpg"
    result = ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu"))
    assert "Warning:" in result.stderr and "alpha" in result.stderr
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"


def test_output_format_follows_the_extension_and_quality(tmp_path):
    src = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src)
    png, webp = tmp_path / "a.png", tmp_path / "a.webp"
    ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", png, "--device", "cpu"))
    ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", webp, "--quality", "100", "--device", "cpu"))
    with Image.open(webp) as im:
        assert im.format == "WEBP"
        assert np.array_equal(np.asarray(im.convert("RGB")), data.load_image(png))  # 100 on WebP: lossless
    sizes = {}
    for quality in (30, 95):
        out = tmp_path / f"q{quality}.jpg"
        ok(run("enhance", src, "-m", "bicubic", "-s", "2", "-o", out, "--quality", quality, "--device", "cpu"))
        with Image.open(out) as im:
            assert im.format == "JPEG"
        sizes[quality] = out.stat().st_size
    assert sizes[95] > 1.5 * sizes[30]


def test_an_image_into_a_video_extension_is_refused(tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    result = run("enhance", src, "-m", "bicubic", "-s", "2", "-o", tmp_path / "photo.mp4")
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot write an image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


@pytest.mark.parametrize("mode", ["L", "P", "LA", "CMYK"])
def test_every_mode_reads_as_rgb(tmp_path, mode):
    src = tmp_path / f"m.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (6, 4)).save(src)
    picture = data.read_image(src)
    assert picture.rgb.shape == (4, 6, 3) and picture.rgb.dtype == np.uint8
    assert (picture.alpha is not None) == (mode == "LA")


def test_16_bit_images_keep_their_levels_through_a_network(tmp_path):
    """`auto` would pick bf16 on an AMX/AVX512-BF16 CPU; its 8-bit mantissa would leave ~128 levels between 0.5
    and 1, so a 16-bit image runs in fp32 and keeps thousands."""
    y, x = np.mgrid[0:32, 0:32]
    rgb = np.stack([33000 + x * 900 + y * 30, 34000 + y * 900 + x * 20, 40000 + (x + y) * 300], axis=-1)
    src = tmp_path / "deep.png"
    write_png16(src, rgb.astype(np.uint16))
    out = tmp_path / "deep_x4.png"
    ok(run("enhance", src, "-m", "espcn", "-s", "4", "-o", out, "--device", "cpu"))
    result = data.read_image(out).rgb
    assert result.dtype == np.uint16 and len(np.unique(result[..., 0])) > 1000
