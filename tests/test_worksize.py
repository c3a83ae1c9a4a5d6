"""vsr.pipeline.worksize: the batch / tiles a run chooses, tiles padded by the receptive field computing what whole
frames do (every architecture; the shipped weights), and the choice staying within what the pre-flight allows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import clip_frame, make_clip
from torch import nn

from vsr import models
from vsr.cli import cli
from vsr.errors import VsrError
from vsr.models.runner import Upscaler
from vsr.pipeline.memory import activation_width, estimate_batch_bytes, fit_memory
from vsr.pipeline.worksize import (
    MAX_BATCH,
    WORK_MEMORY,
    choose_work_size,
    computed_pixels,
    receptive_field,
)
from vsr.precision import Precision

CPU = torch.device("cpu")
WEIGHTS = sorted((Path(models.__file__).parents[1] / "weights").glob("*.pt"))
TINY = {"srresnet": {"num_feat": 8, "num_block": 2}, "rsrresnet": {"num_feat": 8, "num_block": 2, "num_state": 4},
        "encdec": {"num_feat": 8}, "srcnn": {"num_feat": 16}, "espcn": {"num_feat": 16}}


def frames(count: int, width: int, height: int) -> torch.Tensor:
    """Real-looking content (edges, gradients) plus noise, so every tap of the model matters."""
    rng = np.random.default_rng(0)
    pics = np.stack([clip_frame(i, width, height) for i in range(count)]).astype(np.int16)
    return torch.from_numpy(np.clip(pics + rng.integers(-20, 20, pics.shape), 0, 255).astype(np.uint8))


def tiled_vs_whole(net: nn.Module, lq: torch.Tensor, precision: str, tile: int) -> int:
    """Largest difference between whole frames and tiles of about ``tile`` with the overlap the run would choose."""
    work, _ = choose_work_size(net, height=lq.shape[1], width=lq.shape[2], device=CPU, value_bytes=4, batch=1,
                               tile=-(-tile // receptive_field(net)[1]) * receptive_field(net)[1])
    whole = Upscaler(net, CPU, Precision(precision, "test"))
    tiled = Upscaler(net, CPU, Precision(precision, "test"), tile=work.tile, tile_pad=work.tile_pad)
    # One frame a call, in order: a recurrent model carries its state (per tile) from frame to frame.
    diffs = [(tiled(frame[None]).int() - whole(frame[None]).int()).abs().max() for frame in lq]
    return int(max(diffs))


@pytest.mark.parametrize("arch", models.list_models())
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiles_padded_by_the_receptive_field_equal_whole_frames(arch, scale):
    torch.manual_seed(scale)
    net = models.build_model(arch, scale=scale, **TINY.get(arch, {})).eval()
    count = 1
    if getattr(net, "recurrent", False):
        # The past must matter (it starts at zero), and the scene-cut test is left out: it judges each tile's own
        # window, so on cuts a tile can decide otherwise than the whole frame (the runner's design, not tiling's).
        nn.init.normal_(net.conv_temporal.weight, std=0.05)
        net.cut_threshold, count = 0, 4
    # Odd sizes: tiles of every shape, the last ones narrow; in fp32 any difference is float rounding.
    assert tiled_vs_whole(net, frames(count, 61, 45), "fp32", 20) <= 1


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.stem for p in WEIGHTS])
def test_shipped_weights_tiled_equal_whole_frames(path):
    net = models.load_model(str(path), scale=models.inspect_weights(path)["scale"])
    # bf16 is what runs on CPUs with AVX512-BF16 or AMX; the fast graph for the SRResNet family.
    assert tiled_vs_whole(net, frames(1, 112, 72), "bf16", 40) <= 1


def test_receptive_field_of_the_paper_srresnet():
    # conv 9x9 (4) + 16 blocks x 2 convs (32) + conv (1) + x2 stage conv at LR (1) + x2 stage conv at 2x (0.5)
    # + 9x9 at 4x (1) = 39.5 LR pixels, rounded up, plus 2 for interpolation a forward may do out of sight.
    assert receptive_field(models.build_model("srresnet", scale=4)) == (42, 1)
    # Two stride-2 downsamplings: tiles must start on the 4-pixel grid, and the overlap is a multiple of it.
    pad, align = receptive_field(models.build_model("encdec", scale=2))
    assert align == 4 and pad % 4 == 0


def test_receptive_field_unknown_for_layers_it_cannot_read():
    class Attention(nn.Module):  # mixes every pixel with every other: no finite tile overlap is exact
        def forward(self, x):
            return x + x.mean(dim=(2, 3), keepdim=True)

    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Attention())
    net.scale = 1
    assert receptive_field(net) is None


def test_computed_pixels_counts_the_overlap():
    assert computed_pixels(100, 200, 0, 10) == 100 * 200
    assert computed_pixels(100, 200, 100, 10) == 100 * (110 + 110)  # two tiles side by side, 10 px each way
    assert computed_pixels(50, 50, 64, 10) == 2500  # one tile holds the frame


def choose(arch, scale, width, height, **kwargs):
    net = models.build_model(arch, scale=scale, **TINY.get(arch, {}) if kwargs.pop("tiny", False) else {}).eval()
    kwargs.setdefault("value_bytes", 2)
    work, note = choose_work_size(net, height=height, width=width, device=CPU, **kwargs)
    return net, work, note


def test_small_frames_are_batched_and_large_ones_run_one_at_a_time():
    _, small, _ = choose("srresnet", 4, 160, 120, limit=2**40)
    _, dvd, _ = choose("srresnet", 2, 720, 576, limit=2**40)
    _, tiny, _ = choose("srresnet", 4, 32, 24, limit=2**40)
    assert small.batch == 4 and small.tile == 0 and "4 frames of 160x120" in small.describe()
    assert dvd.batch == 1 and dvd.tile == 0
    assert tiny.batch == MAX_BATCH


def test_large_frames_get_tiles_with_the_least_overlap_that_fits():
    # A whole 1080p frame at x2 needs ~3 GiB: over the work budget, so it is tiled, padded by the receptive field.
    net, work, note = choose("srresnet", 2, 1920, 1080, limit=2**40)
    assert note is None and work.batch == 1 and 0 < work.tile < 1920 and work.tile_pad == 42
    act = activation_width(net)
    assert estimate_batch_bytes(act, 1, 1080, 1920, 2, work.tile, 42, 2) <= WORK_MEMORY
    assert re.search(r"tiles of \d+ \+ 42 overlap \(a whole frame needs about 3\.\d GiB, more than the 2\.0 GiB "
                     r"work budget; \d+ % recomputed overlap\)", work.describe()), work.describe()
    # No fitting tile side recomputes fewer pixels.
    for side in range(64, 1920, 8):
        if estimate_batch_bytes(act, 1, 1080, 1920, 2, side, 42, 2) <= WORK_MEMORY:
            assert computed_pixels(1080, 1920, side, 42) >= computed_pixels(1080, 1920, work.tile, 42)


@pytest.mark.parametrize("limit", [2**40, 3 * 2**30, 200 * 2**20, 20 * 2**20, 4 * 2**20])
@pytest.mark.parametrize("size", [(160, 120), (720, 576), (1920, 1080)])
@pytest.mark.parametrize("arch, scale", [("srresnet", 4), ("srresnet", 2), ("espcn", 4), ("encdec", 2)])
def test_chosen_work_never_exceeds_what_the_preflight_allows(limit, size, arch, scale):
    width, height = size
    queued = 10
    try:
        net, work, _ = choose(arch, scale, width, height, tiny=True, limit=limit, queued_batches=queued)
    except VsrError:
        return  # nothing fits: refused before any work, as the pre-flight does
    act = activation_width(net)
    need = estimate_batch_bytes(act, work.batch, height, width, scale, work.tile, work.tile_pad, 2, 1, queued)
    assert need <= min(limit, WORK_MEMORY) or work.why == "reduced to fit in memory"
    assert need <= limit
    # The pre-flight check, given the choice, keeps it as it is.
    kept = fit_memory(net, height=height, width=width, batch=work.batch, tile=work.tile, tile_pad=work.tile_pad,
                      device=CPU, value_bytes=2, queued_batches=queued, limit=limit)
    assert kept == (work.batch, work.tile, None)


def test_what_the_user_sets_is_kept_where_it_fits():
    _, work, note = choose("srresnet", 4, 160, 120, batch=2, tile=0, tile_pad=5, limit=2**40)
    assert (work.batch, work.tile, work.tile_pad, note) == (2, 0, 5, None)
    _, work, _ = choose("srresnet", 4, 720, 576, tile=128, limit=2**40)
    assert work.tile == 128 and work.tile_pad == 42 and work.why == "tiles as asked"
    _, work, _ = choose("srresnet", 2, 1920, 1080, tile=0, limit=2**40)  # whole frames asked for: no tiles
    assert work.tile == 0


def test_enhance_start_line_says_what_was_chosen(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=5, size=(64, 48))
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["enhance", str(clip), "-m", "bicubic", "-s", "2", "--device", "cpu", "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    assert f"batch {MAX_BATCH} ({MAX_BATCH} frames of 64x48 a call)" in result.stderr.splitlines()[0]
    assert "5/5 frames" in result.stderr
