"""`vsr compare` on a tiny real clip: the three artefacts exist with the right sizes and labels, and the page works
in a real browser (Debian's chromium driven by Playwright, no network): both sides show the chosen outputs, the
slider decides which one shows at a given pixel, a click zooms, the table lists every model."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_clip
from vsr import compare
from vsr.cli import cli
from vsr.compare.grid import CROP_TILE, GAP
from vsr.models import build_model, load_model, save_weights
from vsr.pipeline import EnhanceConfig

REPO = Path(__file__).resolve().parents[1]
LABELS = ["bicubic", "espcn", "tiny"]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """bicubic, espcn (shipped) and a tiny random SRResNet (a file, like a foreign one) on 1 s of a 64x48 clip."""
    root = tmp_path_factory.mktemp("compare")
    clip = make_clip(root / "clip.mp4", frames=20, fps=10)
    tiny = build_model("srresnet", scale=4, num_feat=4, num_block=1)
    save_weights(tiny, root / "tiny.pt", arch="srresnet", args={"num_feat": 4, "num_block": 1}, meta={"phase": "gan"})
    models = [load_model("espcn", scale=4), load_model(root / "tiny.pt", scale=None)]
    result = compare.compare(clip, root / "out", models, EnhanceConfig(device="cpu"), at=0.5, duration=1.0,
                             pair=("bicubic", "tiny"))
    return result


def test_artefacts_have_the_right_sizes_and_labels(compared):
    folder = compared.folder
    assert [r.label for r in compared.runs] == LABELS
    assert not list(folder.parent.glob(".out.partial-*"))  # built aside, renamed whole
    # grid.png: a header, then one row per model: the whole frame (256x192) and three 48-px crops zoomed 5x.
    crop = 48
    tile = crop * (CROP_TILE // crop)
    with Image.open(folder / "grid.png") as grid:
        assert grid.size == (GAP + 256 + 3 * (tile + GAP) + GAP, 64 + 3 * (tile + GAP) + GAP)
        pixels = np.asarray(grid.convert("RGB"))
    assert all(box[2:] == (crop, crop) for box in compared.crops) and len(compared.crops) == 3
    # Each row's label box (white text on black) sits in its top-left corner, and the three differ (three names).
    boxes = [pixels[64 + row * (tile + GAP) + 4:64 + row * (tile + GAP) + 22, GAP + 4:GAP + 60] for row in range(3)]
    for box in boxes:
        assert (box == 0).all(axis=2).mean() > 0.4 and (box > 200).all(axis=2).any()
    assert not np.array_equal(boxes[0], boxes[1]) and not np.array_equal(boxes[1], boxes[2])
    for label in LABELS:
        with Image.open(folder / "frames" / f"{label}.png") as still:
            assert still.size == (256, 192) and still.text["vsr_model"] == label

    # side_by_side.mp4: the excerpt (10 frames, with the source's audio), bicubic left and tiny right, labelled.
    with av.open(str(compared.side_by_side)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (256, 192)
        assert len(container.streams.audio) == 1
        assert container.metadata["vsr_model"] == "bicubic | tiny"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10 == compared.runs[0].frames
    shown = frames[5].astype(int)
    left, right = (np.asarray(Image.open(folder / "frames" / f"{n}.png"), dtype=int) for n in ("bicubic", "tiny"))
    region = (slice(40, 190), slice(10, 110))  # the left half, below the label
    assert np.abs(shown[region] - left[region]).mean() < 8 < np.abs(shown[region] - right[region]).mean()
    region = (slice(40, 190), slice(146, 250))
    assert np.abs(shown[region] - right[region]).mean() < 8 < np.abs(shown[region] - left[region]).mean()
    assert (frames[0][8:18, 8:30] < 40).all(axis=2).mean() > 0.3  # the label's dark box, top left

    page = (folder / "index.html").read_text()
    for label in LABELS:
        assert f"<td>{label}</td>" in page and f"frames/{label}.png" in page
    assert "http://" not in page and "https://" not in page


def test_compare_cli_and_errors(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=10, fps=10)
    run = CliRunner().invoke
    result = run(cli, ["compare", str(clip), "--at", "0.2", "--duration", "0.5", "-m", "espcn",
                       "-o", str(tmp_path / "cmp"), "--crop", "8,8,16,12", "--wipe"])
    assert result.exit_code == 0, result.output
    assert "grid.png, side_by_side.mp4 (bicubic | espcn), index.html (2 models)" in result.output
    with Image.open(tmp_path / "cmp" / "grid.png") as grid:
        assert grid.size == (GAP + 256 + 64 * 4 + GAP + GAP, 64 + 2 * (48 * 4 + GAP) + GAP)  # crop 64x48 out, 4x
    again = run(cli, ["compare", str(clip), "--at", "0.2", "-m", "espcn", "-o", str(tmp_path / "cmp")])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    alone = run(cli, ["compare", str(clip), "--at", "0.2", "-o", str(tmp_path / "alone")])
    assert alone.exit_code == 1 and "name the models to compare" in alone.stderr
    for args, fragment in ((["--at", "5"], "past the end"), (["--at", "x"], "not seconds"),
                           (["--at", "0", "--crop", "60,40,16,16"], "not inside"),
                           (["--at", "0", "--pair", "bicubic,nope"], "not one of the models")):
        bad = run(cli, ["compare", str(clip), "-m", "espcn", "-o", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 1 and bad.stderr.startswith("Error: ") and fragment in bad.stderr, bad.output
        assert not (tmp_path / "bad").exists()


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make test installs it with the test extras)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium browser installed (make test installs Debian's chromium with apt-get)")
    return sync_playwright, chromium


def _screenshot(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#stage").screenshot())).convert("RGB"), dtype=int)


def _point(a: np.ndarray, b: np.ndarray, fx: float) -> tuple[float, float]:
    """(fx, fy) on column fx of the frames where they differ most, in a calm 5x5 patch (read back reliably)."""
    x = round(fx * a.shape[1])
    diff = np.abs(a[:, x - 2:x + 3] - b[:, x - 2:x + 3]).sum(axis=2)
    spread = a[:, x - 2:x + 3].std(axis=1).sum(axis=1)
    rows = np.arange(10, a.shape[0] - 10)
    y = rows[np.argmax(diff[rows].mean(axis=1) - 4 * spread[rows])]
    return fx, (y + 0.5) / a.shape[0]


def _closer(shot: np.ndarray, point: tuple[float, float], a: np.ndarray, b: np.ndarray) -> str:
    """'a' or 'b': which frame's colour the screenshot shows at ``point``."""
    sy, sx = round(point[1] * shot.shape[0]), round(point[0] * shot.shape[1])
    ay, ax = round(point[1] * a.shape[0] - 0.5), round(point[0] * a.shape[1])
    seen = shot[sy - 1:sy + 2, sx - 1:sx + 2].mean(axis=(0, 1))
    da = np.abs(seen - a[ay, ax - 1:ax + 2].mean(axis=0)).sum()
    db = np.abs(seen - b[ay, ax - 1:ax + 2].mean(axis=0)).sum()
    return "a" if da < db else "b"


def test_page_in_a_real_browser(compared):
    sync_playwright, chromium = _browser()
    folder = compared.folder
    left, right = (np.asarray(Image.open(folder / "frames" / f"{n}.png").convert("RGB"), dtype=int)
                   for n in ("bicubic", "tiny"))
    outside = []

    def only_local(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, args=BROWSER_ARGS, headless=True, offline=True,
            viewport={"width": 1200, "height": 900})
        try:
            context.route("**/*", only_local)
            page = context.new_page()
            page.goto((folder / "index.html").as_uri())
            page.select_option("#left", "bicubic")
            page.select_option("#right", "tiny")
            page.wait_for_function("['imgL', 'imgR'].every(id => { const i = document.getElementById(id); "
                                   "return i.complete && i.naturalWidth === 256; })")
            assert page.get_attribute("#imgL", "src") == "frames/bicubic.png"
            assert page.get_attribute("#imgR", "src") == "frames/tiny.png"
            assert "bicubic" in page.inner_text("#nameL") and "tiny" in page.inner_text("#nameR")

            # Half way: each side shows its own output.
            page.locator("#slider").fill("500")
            shot = _screenshot(page)
            assert _closer(shot, _point(left, right, 0.25), left, right) == "a"
            assert _closer(shot, _point(left, right, 0.75), left, right) == "b"
            # The same pixel changes sides as the slider moves past it.
            middle = _point(left, right, 0.5)
            page.locator("#slider").fill("900")
            assert _closer(_screenshot(page), middle, left, right) == "a"
            page.locator("#slider").fill("100")
            assert _closer(_screenshot(page), middle, left, right) == "b"

            # A click zooms in (2x at least, whole pixels), a second one fits again.
            fitted = page.locator("#stage").bounding_box()["width"]
            page.locator("#stage").click()
            assert page.locator("#stage").bounding_box()["width"] >= 2 * fitted - 1
            page.locator("#stage").click()
            assert abs(page.locator("#stage").bounding_box()["width"] - fitted) < 1

            rows = page.locator("#models-table tbody tr")
            assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == LABELS
            assert "yes" in rows.nth(2).inner_text() and "no" in rows.nth(1).inner_text()
        finally:
            context.close()
    assert outside == []


def test_sigterm_leaves_no_half_built_folder(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=300, fps=10, size=(160, 120))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "vsr", "compare", str(clip), "--at", "0", "--duration", "30",
                             "-m", "espcn", "-o", str(tmp_path / "out")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # wait (at most a minute) until the first model's excerpt is being written
            if list(tmp_path.glob(".out.partial-*/outputs/.*partial*")) or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Error: interrupted" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
