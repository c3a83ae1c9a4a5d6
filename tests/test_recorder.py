"""Recorder round trips through FFmpeg (vsr.video.recorder): MPEG-2, chroma subsampling, weaving, deinterlacing."""

from __future__ import annotations

import numpy as np
import pytest

from vsr.errors import VsrError
from vsr.video import recorder


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients, a coloured box and texture: something with edges and detail for the codec to spend bits on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, 128 + 60 * np.sin(x / 3) * np.cos(y / 4)], axis=-1)
    img[h // 4 : h // 2, w // 3 : w // 2] = (230, 40, 60)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b).mean())


def _luma_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64).mean(axis=-1) - b.astype(np.float64).mean(axis=-1)).mean())


def _comb(frame: np.ndarray) -> float:
    """Line-to-line zigzag: mean |2 row_i - row_{i-1} - row_{i+1}| on luma (large where fields disagree)."""
    y = frame.astype(np.float64).mean(axis=2)
    return float(np.abs(2 * y[1:-1] - y[:-2] - y[2:]).mean())


def test_mpeg2_round_trip_shape_determinism_and_bitrate():
    clip = np.stack([np.roll(_scene(48, 62), 2 * i, axis=1) for i in range(4)])  # odd-ish width: padded, cropped
    low = recorder.mpeg2_round_trip(clip, 0.1)
    assert low.shape == clip.shape and low.dtype == np.uint8
    assert np.array_equal(low, recorder.mpeg2_round_trip(clip, 0.1))
    high = recorder.mpeg2_round_trip(clip, 2.0)
    interlaced = recorder.mpeg2_round_trip(clip, 0.1, interlaced=True)
    assert interlaced.shape == clip.shape and not np.array_equal(interlaced, low)  # a different coding mode
    assert _luma_error(low, clip) > 1.5 * _luma_error(high, clip)  # fewer bits, more loss
    with pytest.raises(VsrError, match="bitrate"):
        recorder.mpeg2_round_trip(clip, 0.0)


def test_chroma_subsampling_keeps_luma_and_smears_colour_the_right_way():
    h, w = 32, 48
    y, x = np.mgrid[0:h, 0:w]
    grey = np.full((h, w, 3), 128, np.uint8)
    vertical_stripes = grey.copy()
    vertical_stripes[x % 4 < 2] = (200, 100, 128)  # colour changes along x every 2 pixels
    horizontal_stripes = grey.copy()
    horizontal_stripes[y % 4 < 2] = (200, 100, 128)  # colour changes along y
    for img in (vertical_stripes, horizontal_stripes):
        for fmt in recorder.CHROMA_FORMATS:
            assert recorder.subsample_chroma(img, fmt).shape == img.shape
    # DV's 4:1:1 keeps a quarter of the horizontal colour: x-stripes 2 px wide are lost, y-stripes survive.
    assert _error(recorder.subsample_chroma(vertical_stripes, "yuv411p"), vertical_stripes) > 15
    assert _error(recorder.subsample_chroma(horizontal_stripes, "yuv411p"), horizontal_stripes) < 3
    # 4:2:0 halves both ways, so it loses less of the x-stripes than 4:1:1 but also smears the y-stripes.
    assert _error(recorder.subsample_chroma(vertical_stripes, "yuv420p"), vertical_stripes) < _error(
        recorder.subsample_chroma(vertical_stripes, "yuv411p"), vertical_stripes)
    assert _error(recorder.subsample_chroma(horizontal_stripes, "yuv420p"), horizontal_stripes) > 5
    # A grey picture has no chroma to lose.
    assert _error(recorder.subsample_chroma(grey, "yuv411p"), grey) < 3  # only the limited-range rounding
    with pytest.raises(VsrError, match="chroma"):
        recorder.subsample_chroma(grey, "yuv444p")


@pytest.mark.parametrize("method", recorder.DEINTERLACERS)
def test_deinterlacers_remove_combing_and_leave_still_pictures_alone(method):
    scene = _scene(48, 64)
    # A pan of 3 px per field: the bottom field of each frame sees the scene later than its top field.
    fields = [np.roll(scene, 3 * k, axis=1) for k in range(8)]
    woven = np.stack([recorder.weave(fields[2 * t], fields[2 * t + 1]) for t in range(4)])
    assert _comb(woven[1]) > 1.5 * _comb(scene)
    out = recorder.deinterlace(woven, method)
    assert out.shape == woven.shape and out.dtype == np.uint8
    assert np.array_equal(out, recorder.deinterlace(woven, method))
    assert _comb(out[1]) < 0.7 * _comb(woven[1])
    # The top field is kept as it was: the output is at the top field's time.
    assert _error(out[1][0::2], fields[2][0::2]) < 1.0
    if method == "bob":
        assert np.array_equal(out[1][0::2], fields[2][0::2])
    # Both fields of one instant: nothing to fix. bwdif sees it (0.4 grey levels off), yadif mostly (2.8), line
    # doubling cannot (6.0: it throws the bottom field away whatever it holds).
    still = np.stack([_scene(48, 64, seed=1)] * 3)
    assert _error(recorder.deinterlace(still, method)[1], still[1]) < {"bwdif": 1.0, "yadif": 4.0, "bob": 8.0}[method]


def test_deinterlace_rejects_unknown_methods():
    with pytest.raises(VsrError, match="deinterlacer"):
        recorder.deinterlace(np.zeros((2, 8, 8, 3), np.uint8), "weave")
