"""vsr installs like a library: a wheel built from the sources, installed into a fresh virtual environment, runs
`vsr enhance` from a directory that has nothing of the repository, with the default (shipped) model.

The fresh environment reuses this one's packages (torch, PyAV, ...) through a .pth file, so the test installs the
wheel alone (--no-deps) and takes seconds rather than the minutes a torch download would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import make_clip

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_enhances_from_anywhere(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO / "vsr", src / "vsr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src])
    wheel = next(dist.glob("vsr-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        assert "vsr/weights/srresnet_x4.pt" in zf.namelist()
        assert {"vsr/weights/README.md", "vsr/weights/TRAINING_LOG.md"} <= set(zf.namelist())  # the card links the log

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # This environment's packages after the new one's own: torch and PyAV without a download, and no vsr from here
    # (an editable install's finder is a .pth of its own, which a path added this way does not run).
    Path(site, "reuse_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_clip(elsewhere / "clip.mp4", frames=3, size=(32, 24))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VSR_WEIGHTS_DIR", "VIRTUAL_ENV")}
    where = _run([python, "-c", "import vsr; print(vsr.__file__)"], cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    proc = _run([bindir / "vsr", "enhance", "clip.mp4", "-s", "4", "--device", "cpu"], cwd=elsewhere, env=env)
    assert "srresnet x4" in proc.stderr and "3/3 frames" in proc.stderr, proc.stderr
    assert (elsewhere / "clip_x4.mp4").is_file()


def test_shipped_weights_are_package_data(monkeypatch):
    import vsr
    from vsr import models

    monkeypatch.delenv("VSR_WEIGHTS_DIR", raising=False)
    assert models.weights_dir() == Path(vsr.__file__).parent / "weights"
    assert models.find_weights("srresnet", 4) is not None
