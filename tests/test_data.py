"""Degradations, frame extraction, the pair dataset and its loader, on tiny synthetic images and clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_clip
from vsr.data import (
    Degradation,
    PairDataset,
    bicubic_downscale,
    bicubic_upscale,
    list_images,
    load_image,
    make_loader,
    prepare_frames,
)
from vsr.errors import VsrError


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, a few hard edges and a little texture: something for codecs and crops to work on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    img[h // 4 : h // 2, w // 3 : w // 2] = (230, 40, 60)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _blockiness(img: np.ndarray) -> float:
    """Mean luma step across 8-pixel block boundaries over the mean step elsewhere (1 = no block structure)."""
    y = img.astype(np.float64).mean(axis=2)
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    at_edges = dx[:, 7::8].mean() + dy[7::8].mean()
    inside = np.delete(dx, np.s_[7::8], axis=1).mean() + np.delete(dy, np.s_[7::8], axis=0).mean()
    return at_edges / inside


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


# --------------------------------------------------------------------------------------------------- resizing


def test_bicubic_shapes_modcrop_and_gray():
    hr = _picture(50, 67)
    lr = bicubic_downscale(hr, 4)
    assert lr.shape == (12, 16, 3) and lr.dtype == np.uint8
    assert np.array_equal(lr, bicubic_downscale(hr[:48, :64], 4))  # the remainder is cropped, not resampled
    assert bicubic_upscale(lr, 4).shape == (48, 64, 3)
    assert bicubic_downscale(hr[..., 0], 2).shape == (25, 33)
    with pytest.raises(ValueError):
        bicubic_downscale(hr.astype(np.float32), 2)


def test_load_image_converts_modes(tmp_path):
    gray = _save(tmp_path / "g.png", _picture(20, 30)[..., 0])
    rgba = tmp_path / "a.png"
    Image.fromarray(_picture(20, 30)).convert("RGBA").save(rgba)
    for path in (gray, rgba):
        img = load_image(path)
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(VsrError, match="cannot read image"):
        load_image(tmp_path / "bad.png")


# --------------------------------------------------------------------------------------------------- degradations


@pytest.mark.parametrize("preset", ["bicubic", "realistic"])
def test_degradation_shapes_and_determinism(preset):
    hr = _picture(76, 100)  # LR 19x25: odd, so the H.264 stage must pad and crop back
    deg = Degradation(preset)
    a = deg(hr, 4, np.random.default_rng(7))
    b = deg(hr, 4, np.random.default_rng(7))
    assert a.shape == (19, 25, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    if preset == "bicubic":
        assert np.array_equal(a, bicubic_downscale(hr, 4))
    else:
        outs = [deg(hr, 4, np.random.default_rng(s)) for s in range(3)]
        assert not all(np.array_equal(outs[0], o) for o in outs[1:])


def test_realistic_differs_from_bicubic_and_is_blockier():
    hr = _picture(256, 256)
    bicubic = bicubic_downscale(hr, 4)
    realistic = Degradation("realistic")(hr, 4, np.random.default_rng(0))
    assert np.abs(realistic.astype(int) - bicubic).mean() > 1.0
    # Same seed with and without the codec: the draws stay aligned, so only H.264 differs between the two.
    heavy = dict(crf=(40, 40), jpeg_prob=0.0, noise_sigma=(0.0, 0.0), poisson_prob=0.0, camera_noise_prob=0.0,
                 interlace_prob=0.0, chroma_prob=0.0, mpeg2_prob=0.0, second_order_prob=0.0)
    coded = Degradation("realistic", **heavy)(hr, 4, np.random.default_rng(1))
    uncoded = Degradation("realistic", video_prob=0.0, **heavy)(hr, 4, np.random.default_rng(1))
    assert _blockiness(coded) > _blockiness(uncoded) + 0.2
    assert _blockiness(coded) > _blockiness(bicubic) + 0.2


def test_degrade_clip_shapes_and_one_camera():
    frames = np.stack([_picture(48, 64, seed=i) for i in range(4)])
    out = Degradation("realistic").degrade_clip(frames, 4, np.random.default_rng(3))
    assert out.shape == (4, 12, 16, 3) and out.dtype == np.uint8
    again = Degradation("realistic").degrade_clip(frames, 4, np.random.default_rng(3))
    assert np.array_equal(out, again)
    plain = Degradation().degrade_clip(frames, 2, np.random.default_rng(0))
    assert np.array_equal(plain[2], bicubic_downscale(frames[2], 2))


# Every stage of the realistic chain off: what is left is the bicubic downscale. Tests switch on one stage at a time.
NOTHING = dict(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0), poisson_prob=0.0, camera_noise_prob=0.0,
               interlace_prob=0.0, chroma_prob=0.0, jpeg_prob=0.0, video_prob=0.0, second_order_prob=0.0)


def _stage(**on) -> Degradation:
    return Degradation("realistic", **{**NOTHING, **on})


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_realistic_with_every_stage_off_is_bicubic():
    hr = _picture(64, 96)
    assert np.array_equal(_stage()(hr, 4, np.random.default_rng(0)), bicubic_downscale(hr, 4))


def test_every_stage_on_is_seeded_and_keeps_shapes():
    everything = dict(camera_noise_prob=1.0, interlace_prob=1.0, field_motion=(4.0, 4.0), chroma_prob=1.0,
                      jpeg_prob=1.0, video_prob=1.0, mpeg2_prob=1.0, second_order_prob=1.0, first_factor=(1.5, 2.0))
    deg = _stage(blur_sigma=(0.5, 1.5), **everything)
    hr = _picture(76, 100)
    a, b = deg(hr, 4, np.random.default_rng(5)), deg(hr, 4, np.random.default_rng(5))
    assert a.shape == (19, 25, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, deg(hr, 4, np.random.default_rng(6)))
    frames = np.stack([_picture(48, 64, seed=i) for i in range(4)])
    clip = deg.degrade_clip(frames, 4, np.random.default_rng(2))
    assert clip.shape == (4, 12, 16, 3) and np.array_equal(clip, deg.degrade_clip(frames, 4, np.random.default_rng(2)))


def test_camera_noise_grows_in_low_light_and_in_the_shadows():
    def noise(level: int, peak: float) -> tuple[float, float]:
        flat = np.full((128, 128, 3), level, np.uint8)
        out = _stage(camera_noise_prob=1.0, camera_peak=(peak, peak), read_noise=(0.5, 0.5), gray_noise_prob=0.0)(
            flat, 4, np.random.default_rng(0)).astype(np.float64)
        return float(out.std()), float(out.mean())

    dark_dim, dark_mean = noise(40, 50.0)
    bright_dim, bright_mean = noise(200, 50.0)
    bright_lit, _ = noise(200, 1000.0)
    assert bright_dim > 2 * bright_lit > 0  # fewer photons, more noise: signal-dependent shot noise
    assert dark_dim > bright_dim  # read noise stretched by the gamma: the shadows are the noisiest
    assert abs(bright_mean - 200) < 3 and abs(dark_mean - 40) < 6  # noise, not a change of exposure


def test_chroma_stage_keeps_luma_and_411_blurs_colour_sideways():
    hr = np.full((64, 128, 3), 128, np.uint8)
    hr[:, (np.arange(128) // 8) % 2 == 0] = (210, 90, 120)  # 8-px colour stripes: 2 px wide in LR
    plain = bicubic_downscale(hr, 4)
    dv = _stage(chroma_prob=1.0, chroma_formats=("yuv411p",))(hr, 4, np.random.default_rng(0))
    assert np.abs(_luma(dv) - _luma(plain)).mean() < 3  # luma survives
    assert np.abs(dv.astype(int) - plain).mean() > 8  # the colour of 2-px stripes does not


def test_interlace_stage_weaves_moving_fields_then_deinterlaces():
    hr = _picture(128, 128)
    kept = _stage(interlace_prob=1.0, field_motion=(8.0, 8.0), deinterlacers=("bob",))(hr, 4, np.random.default_rng(0))
    plain = bicubic_downscale(hr, 4).astype(np.float64)
    # Line doubling: every odd line is the mean of the top-field lines around it; the top field is the HR's picture.
    out = kept.astype(np.float64)
    assert np.abs(out[1:-1:2] - (out[0:-2:2] + out[2::2]) / 2).max() <= 1
    assert np.abs(out[0::2] - plain[0::2]).mean() < 1
    for method in ("bwdif", "yadif"):
        deint = _stage(interlace_prob=1.0, field_motion=(8.0, 8.0), deinterlacers=(method,))(
            hr, 4, np.random.default_rng(0))
        assert 0.5 < np.abs(deint - plain).mean() < 10  # changed, but the picture is still the picture


def test_mpeg2_stage_is_blockier_at_low_dvd_bitrates():
    hr = _picture(256, 256)
    coded = _stage(video_prob=1.0, mpeg2_prob=1.0, mpeg2_bpp=(0.1, 0.1))(hr, 4, np.random.default_rng(0))
    assert _blockiness(coded) > _blockiness(bicubic_downscale(hr, 4)) + 0.2


def test_second_round_blurs_and_recompresses():
    hr = _picture(256, 256)
    hr[:, (np.arange(256) // 8) % 2 == 0] //= 2  # stripes 2 LR pixels wide: detail a blur takes away
    first = _stage(video_prob=1.0, crf=(23, 23))(hr, 4, np.random.default_rng(0))
    second = _stage(video_prob=1.0, crf=(23, 23), second_order_prob=1.0, first_factor=(1.0, 1.0),
                    second_blur=(1.5, 1.5), second_crf=(23, 23))(hr, 4, np.random.default_rng(0))
    assert second.shape == first.shape
    energy = [np.abs(np.diff(_luma(img), axis=1)).mean() for img in (first, second)]
    assert energy[1] < 0.8 * energy[0]  # a copy of a blurred copy holds less detail


def test_degradation_rejects_bad_settings():
    with pytest.raises(VsrError, match="unknown degradation"):
        Degradation("jpeg")
    with pytest.raises(VsrError, match="crf"):
        Degradation("realistic", crf=(35, 18))
    with pytest.raises(VsrError, match="jpeg_prob"):
        Degradation("realistic", jpeg_prob=1.5)
    with pytest.raises(VsrError, match="deinterlacers"):
        Degradation("realistic", deinterlacers=("weave",))
    with pytest.raises(VsrError, match="first_factor"):
        Degradation("realistic", first_factor=(0.5, 1.0))


# --------------------------------------------------------------------------------------------------- files


def test_list_images_recursive_sorted_filtered(tmp_path):
    img = _picture(8, 8)
    for rel in ("b.png", "a.jpg", "sub/c.BMP", "sub/d.webp", "holdout/e.png", ".hidden/f.png", "notes.txt"):
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            _save(tmp_path / rel, img)
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.png", "holdout/e.png", "sub/c.BMP", "sub/d.webp"]
    assert "holdout/e.png" not in [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, ("holdout",))]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(VsrError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_training_lists_the_images_enhance_takes(tmp_path):
    # One list of image extensions: a TIFF folder that `vsr enhance` upscales is a folder `vsr train` can read.
    from vsr import video

    _save(tmp_path / "scan.tif", _picture(8, 8))
    assert list_images(tmp_path) == [tmp_path / "scan.tif"]
    assert load_image(tmp_path / "scan.tif").shape == (8, 8, 3)
    assert ".tiff" in video.IMAGE_EXTS


def test_prepare_frames_every_and_holdout(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "cam.mp4", frames=12, size=(64, 48))
    make_clip(clips / "door.mkv", frames=8, size=(32, 32), audio=False)
    calls = []
    out = tmp_path / "frames"
    n = prepare_frames(clips, out, every=2, holdout=0.25, progress=calls.append)
    train = sorted(p.name for p in (out / "train").iterdir())
    holdout = sorted(p.name for p in (out / "holdout").iterdir())
    # cam: 12 frames, the last 3 held out -> train 0,2,4,6,8 and holdout 10; door: 8 frames, last 2 -> 0,2,4 and 6.
    assert train == [f"cam_{i:06d}.png" for i in (0, 2, 4, 6, 8)] + [f"door_{i:06d}.png" for i in (0, 2, 4)]
    assert holdout == ["cam_000010.png", "door_000006.png"]
    assert n == len(train) + len(holdout) == sum(calls)
    assert load_image(out / "train" / "cam_000000.png").shape == (48, 64, 3)
    # A dataset over the prepared folder trains on train/ only.
    assert len(PairDataset(out, scale=4, hr_crop=32).paths) == len(train)


def test_prepare_frames_single_clip_and_max_frames(tmp_path):
    clip = make_clip(tmp_path / "one.mp4", frames=10, size=(32, 32), audio=False)
    assert prepare_frames(clip, tmp_path / "out", max_frames=3) == 3
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == [f"one_{i:06d}.png" for i in range(3)]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VsrError, match="no video clips"):
        prepare_frames(empty, tmp_path / "out2")


# --------------------------------------------------------------------------------------------------- dataset


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "imgs"
    _save(folder / "a.png", _picture(40, 56, seed=1))
    _save(folder / "b.png", _picture(64, 48, seed=2))
    _save(folder / "tiny.png", _picture(20, 60, seed=3))  # smaller than a 32 crop: skipped
    return folder


def test_pair_dataset_shapes_and_skips(image_folder):
    with pytest.warns(UserWarning, match="skipping 1 of 3"):
        ds = PairDataset(image_folder, scale=4, hr_crop=32, length=10, seed=1)
    assert len(ds) == 10 and [p.name for p in ds.skipped] == ["tiny.png"]
    lq, gt = ds[3]
    assert lq.shape == (3, 8, 8) and gt.shape == (3, 32, 32)
    assert lq.dtype == gt.dtype == torch.float32
    assert 0.0 <= float(gt.min()) and float(gt.max()) <= 1.0


def test_pair_dataset_augmentations_keep_pairs_aligned(tmp_path):
    # One image exactly the crop size: every item is that image under one of the 8 symmetries of the square.
    img = _picture(32, 32, seed=5)
    _save(tmp_path / "x.png", img)
    ds = PairDataset(tmp_path, scale=4, hr_crop=32, length=40, seed=0)
    symmetries = [np.rot90(f, k) for f in (img, img[:, ::-1]) for k in range(4)]
    seen = set()
    for i in range(len(ds)):
        lq, gt = ds[i]
        gt_u8 = (gt.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lq_u8 = (lq.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(lq_u8, bicubic_downscale(gt_u8, 4))
        seen.add(next(k for k, s in enumerate(symmetries) if np.array_equal(s, gt_u8)))
    assert len(seen) >= 6  # flips and rotations all occur


def test_pair_dataset_seeding_and_errors(image_folder, tmp_path):
    with pytest.warns(UserWarning):
        a = PairDataset(image_folder, scale=2, hr_crop=32, seed=3, length=4)
        b = PairDataset(image_folder, scale=2, hr_crop=32, seed=3, length=4, cache_mb=0)  # decodes per item
    for i in range(4):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    with pytest.raises(VsrError, match="multiple of the scale"):
        PairDataset(image_folder, scale=4, hr_crop=30)
    with pytest.raises(VsrError, match="smaller than"):
        PairDataset(image_folder, scale=4, hr_crop=128)
    (tmp_path / "none").mkdir()
    with pytest.raises(VsrError, match="no images"):
        PairDataset(tmp_path / "none", scale=4)


def test_pair_dataset_sample_by_area_favours_large_pictures(tmp_path):
    # A 32x32 black picture (1 crop position) and a 160x160 white one (129^2): by image each is drawn half the
    # time; by area the small one almost never.
    _save(tmp_path / "small.png", np.zeros((32, 32, 3), np.uint8))
    _save(tmp_path / "large.png", np.full((160, 160, 3), 255, np.uint8))

    def small_share(sample_by: str) -> float:
        ds = PairDataset(tmp_path, scale=4, hr_crop=32, length=400, seed=0, sample_by=sample_by)
        return sum(float(ds[i][1].mean()) == 0.0 for i in range(len(ds))) / len(ds)

    assert small_share("image") == 0.5
    assert small_share("area") < 0.01  # expected 1 / (1 + 129^2)
    with pytest.raises(VsrError, match="sample_by"):
        PairDataset(tmp_path, scale=4, hr_crop=32, sample_by="pixels")


def test_pair_dataset_realistic_items(image_folder):
    with pytest.warns(UserWarning):
        ds = PairDataset(image_folder, scale=4, hr_crop=32, degradation=Degradation("realistic"), length=3)
    lq, gt = ds[0]
    assert lq.shape == (3, 8, 8) and gt.shape == (3, 32, 32)


def test_make_loader_batches_and_worker_seeding(image_folder):
    with pytest.warns(UserWarning):
        ds = PairDataset(image_folder, scale=4, hr_crop=32, length=8, seed=0)
    lq, gt = next(iter(make_loader(ds, batch_size=4, workers=0)))
    assert lq.shape == (4, 3, 8, 8) and gt.shape == (4, 3, 32, 32)
    loader = make_loader(ds, batch_size=2, workers=2, seed=5)
    batches = [gt for _, gt in loader]
    assert len(batches) == 4
    # Workers get different seeds: their crops of the same two images must not repeat batch for batch.
    crops = torch.cat(batches)
    assert len({tuple(c.flatten()[:64].tolist()) for c in crops}) > 2
    again = torch.cat([gt for _, gt in make_loader(ds, batch_size=2, workers=2, seed=5)])
    assert torch.equal(crops, again)  # reproducible from the loader seed
    with pytest.raises(VsrError, match="fewer than the batch size"):
        make_loader(ds, batch_size=16, workers=0)
