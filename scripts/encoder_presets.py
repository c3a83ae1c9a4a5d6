#!/usr/bin/env python3
"""What each x264 preset costs and keeps on vsr's own output: encode core-ms per frame, bytes per frame and the
PSNR (Y) of the decoded file against the model's RGB output, at the default crf. Prints one markdown table.

    .venv/bin/python scripts/encoder_presets.py                    # both clips of ../shared/data/video, 64 frames
    .venv/bin/python scripts/encoder_presets.py --frames 32 --presets medium veryfast

Each clip's first frames are downscaled to 160 pixels wide and upscaled x4 by the shipped srresnet_real_x4 (the
default for video), so the encoder sees what `vsr enhance` hands it. Every encode goes through vsr's own
`VideoWriter` (RGB -> yuv420p with vsr's swscale flags, x264 with its default threads), timed in process CPU time
(all threads), and is read back with `read_frames`. The CPU time of the SR model itself per frame is printed too,
for the share the encoder adds on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vsr import metrics, models, pipeline, video
from vsr.precision import choose_precision, resolve_device
from vsr.video.colour import SWS_QUALITY

ROOT = Path(__file__).resolve().parents[1]
CLIPS = [ROOT.parent / "shared/data/video/chaplin_archival_with_audio.mp4",
         ROOT.parent / "shared/data/video/vtest_pets_480x360.avi"]


def low_res(path: Path, count: int, width: int = 160) -> np.ndarray:
    """The clip's first ``count`` frames as RGB, resized to ``width`` pixels wide (even height, aspect kept)."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            height = round(frame.height * width / frame.width / 2) * 2
            frames.append(frame.reformat(width=width, height=height, format="rgb24",
                                         interpolation=SWS_QUALITY).to_ndarray())
            if len(frames) == count:
                break
    return np.stack(frames)


def upscale(lr: np.ndarray, upscaler: pipeline.Upscaler) -> tuple[np.ndarray, float]:
    """x4 output of the model, and the model's CPU time per frame in ms (process time, all threads)."""
    upscaler(torch.from_numpy(lr[:4]))  # warm-up
    start = time.process_time()
    sr = np.concatenate([upscaler(torch.from_numpy(lr[i:i + 4])).numpy() for i in range(0, len(lr), 4)])
    return sr, (time.process_time() - start) / len(lr) * 1000


def encode(sr: np.ndarray, path: Path, preset: str, crf: int | None) -> float:
    """Encodes with vsr's writer; returns core-ms per frame."""
    start = time.process_time()
    with video.VideoWriter(path, width=sr.shape[2], height=sr.shape[1], time_base=Fraction(1, 25), fps=Fraction(25),
                           codec="libx264", crf=crf, preset=preset, overwrite=True) as writer:
        for i in range(0, len(sr), 4):
            writer.write(sr[i:i + 4], list(range(i, min(i + 4, len(sr)))))
    return (time.process_time() - start) / len(sr) * 1000


def psnr_y(sr: np.ndarray, path: Path) -> float:
    decoded = np.concatenate([batch.frames for batch in video.read_frames(path, 16)])
    return float(np.mean([metrics.psnr(metrics.rgb_to_y(a), metrics.rgb_to_y(b)) for a, b in zip(sr, decoded)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--presets", nargs="+", default=["medium", "fast", "faster", "veryfast"])
    parser.add_argument("--crf", type=int, nargs="+", default=[None], help="crf values (default: the codec's)")
    parser.add_argument("--weights", default=str(ROOT / "vsr/weights/srresnet_real_x4.pt"))
    args = parser.parse_args()

    device = resolve_device("cpu")
    net = models.load_model(args.weights)
    upscaler = pipeline.Upscaler(net, device, choose_precision("auto", device, getattr(net, "meta", None)))
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, {upscaler.precision.name}, av {av.__version__}")
    print("| clip | out size | preset | crf | x264 + RGB->YUV core-ms/frame | model core-ms/frame | encode/model "
          "| bytes/frame | PSNR-Y dB vs model output |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="vsr-presets-") as tmp:
        for clip in CLIPS:
            sr, model_ms = upscale(low_res(clip, args.frames), upscaler)
            for crf in args.crf:
                for preset in args.presets:
                    out = Path(tmp) / f"{preset}.mp4"
                    encode_ms = encode(sr, out, preset, crf)
                    size = out.stat().st_size / len(sr)
                    print(f"| {clip.stem} | {sr.shape[2]}x{sr.shape[1]} | {preset} | {crf or 'default (18)'} "
                          f"| {encode_ms:.1f} | {model_ms:.0f} | {encode_ms / model_ms:.3f} | {size:.0f} "
                          f"| {psnr_y(sr, out):.2f} |", flush=True)


def cpu_name() -> str:
    """The CPU's model name and its bf16 units, from /proc/cpuinfo."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "?"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    units = [flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in info]
    return f"{name} ({', '.join(units) or 'no bf16 units'})"


if __name__ == "__main__":
    main()
