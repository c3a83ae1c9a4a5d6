"""Does `vsr enhance` run in flat memory? Peak RSS of whole enhance runs on short and long generated clips.

Each run is its own process (``python -m vsr enhance ...``), and its peak RSS is read from the kernel's accounting
of that child (``os.wait4``), so nothing of one run leaks into another's figure. A first row gives the fixed cost
(``vsr --help``: Python, torch, PyAV loaded, no video). If the pipeline held frames (or packets) in a list, the
long clip's row would grow with its length; with bounded queues it stays at the short clip's figure.

    python scripts/measure_memory.py                          # 500 and 5000 frames, bicubic x2, 32x24
    python scripts/measure_memory.py --frames 500 5000 20000 --model espcn --weights vsr/weights/espcn_x2.pt
    python scripts/measure_memory.py --resume                 # the same through --resume segments
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 25) -> Path:
    """H.264 + AAC clip of ``frames`` moving-gradient frames with a tone, made with PyAV."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        audio.layout = "mono"
        for i in range(frames):
            t = i * 0.2
            rgb = np.stack([127 + 127 * np.sin(x / 5 + t), 127 + 127 * np.cos(y / 4 - t), (x + y + 3 * i) % 256], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
            # Audio as the video goes, so the file is interleaved as real recordings are.
            samples = np.arange(i * 22050 // fps, (i + 1) * 22050 // fps)
            tone = (0.2 * np.sin(2 * math.pi * 440 * samples / 22050)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 22050, int(samples[0]), Fraction(1, 22050)
            container.mux(audio.encode(chunk))
        container.mux(stream.encode(None))
        container.mux(audio.encode(None))
    return path


def run_child(args: list[str]) -> tuple[int, float, float, str]:
    """Runs ``python -m vsr ARGS``; returns (exit code, peak RSS in MiB, seconds, last stderr line)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vsr", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN's running max
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return proc.returncode, rss_mib, seconds, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[500, 5000], help="clip lengths to measure")
    parser.add_argument("--size", default="32x24", help="frame size WxH")
    parser.add_argument("--model", default="bicubic", help="-m for vsr enhance")
    parser.add_argument("--weights", default=None, help="--weights for vsr enhance")
    parser.add_argument("--scale", default="2", help="-s for vsr enhance")
    parser.add_argument("--resume", action="store_true", help="measure --resume runs (segments + join)")
    opts = parser.parse_args()
    width, height = (int(v) for v in opts.size.lower().split("x"))

    rows = []
    with tempfile.TemporaryDirectory(prefix="vsr-memory-") as tmp:
        code, rss, seconds, _ = run_child(["--help"])
        rows.append(("import only", "-", rss, seconds, "-", "ok" if code == 0 else f"exit {code}"))
        for frames in opts.frames:
            clip = make_clip(Path(tmp) / f"clip_{frames}.mp4", frames, width, height)
            args = ["enhance", str(clip), "-m", opts.model, "-s", opts.scale, "--device", "cpu", "--preset",
                    "ultrafast", "-o", str(Path(tmp) / f"out_{frames}.mp4")]
            args += ["--weights", opts.weights] if opts.weights else []
            args += ["--resume"] if opts.resume else []
            code, rss, seconds, last = run_child(args)
            status = "ok" if code == 0 and f"{frames}/{frames} frames" in last else f"exit {code}: {last}"
            rows.append((f"{frames} frames", f"{clip.stat().st_size / 1024:.0f} KiB", rss, seconds,
                         f"{frames / seconds:.0f}", status))

    mode = " --resume" if opts.resume else ""
    print(f"vsr enhance -m {opts.model} -s {opts.scale}{mode}, {width}x{height} H.264+AAC input, CPU")
    print(f"{'run':<14}{'input':>10}{'peak RSS':>12}{'wall':>9}{'fps':>7}  status")
    for name, size, rss, seconds, fps, status in rows:
        print(f"{name:<14}{size:>10}{rss:>9.0f} MiB{seconds:>8.1f}s{fps:>7}  {status}")


if __name__ == "__main__":
    main()
