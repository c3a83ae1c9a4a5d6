#!/usr/bin/env python
"""What each stage of `vsr train --degrade realistic` does to a picture, and what it costs the loader.

    scripts/degradation_effects.py                       # 96-px crops of T91, one row per stage
    scripts/degradation_effects.py --out docs/degradations.png

Each stage is switched on alone (every other stage off, as `Degradation(**_OFF, **stage)`), then the default mix
and everything at once. Per stage, over ``--images`` 96-px HR crops (x4: 24-px LR, as training sees them): Y-PSNR
and chroma PSNR (Cb, Cr) of the degraded LR against the clean bicubic LR (lower = the stage changes more), and
milliseconds per sample in this process. ``--out`` writes a strip of one crop per stage (nearest-upscaled x4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vsr, not an installed one

from vsr import data  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OFF = dict(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0), poisson_prob=0.0, camera_noise_prob=0.0, interlace_prob=0.0,
           chroma_prob=0.0, jpeg_prob=0.0, video_prob=0.0, mpeg2_prob=0.0, second_order_prob=0.0)
STAGES = {
    "blur (sigma 0.2-2 HR px)": dict(blur_sigma=(0.2, 2.0)),
    "Gaussian/Poisson noise": dict(noise_sigma=(0.0, 10.0), poisson_prob=0.3),
    "camera noise (30-1000 photons)": dict(camera_noise_prob=1.0),
    "camera noise, low light (30-60)": dict(camera_noise_prob=1.0, camera_peak=(30.0, 60.0)),
    "interlace 0-6 px + deinterlace": dict(interlace_prob=1.0),
    "chroma 4:2:0": dict(chroma_prob=1.0, chroma_formats=("yuv420p",)),
    "chroma 4:1:1 (DV)": dict(chroma_prob=1.0, chroma_formats=("yuv411p",)),
    "JPEG q40-95": dict(jpeg_prob=1.0),
    "H.264 CRF 18-35": dict(video_prob=1.0),
    "MPEG-2 0.2-0.95 bit/px": dict(video_prob=1.0, mpeg2_prob=1.0),
    "second round (x1-2, blur, noise, H.264)": dict(second_order_prob=1.0),
}


def _ycbcr(img: np.ndarray) -> np.ndarray:
    rgb = img.astype(np.float64)
    y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    cb = 128 + (-37.797 * rgb[..., 0] - 74.203 * rgb[..., 1] + 112.0 * rgb[..., 2]) / 255
    cr = 128 + (112.0 * rgb[..., 0] - 93.786 * rgb[..., 1] - 18.214 * rgb[..., 2]) / 255
    return np.stack([y, cb, cr], axis=-1)


def _psnr(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """PSNR of the mean squared error over all pairs (a mean of per-image PSNRs would be ruled by near-clean ones)."""
    mse = float(np.mean([np.mean((a - b) ** 2) for a, b in pairs]))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "train" / "T91", help="HR images")
    parser.add_argument("--images", type=int, default=64, help="crops per stage")
    parser.add_argument("--out", type=Path, help="write a picture strip here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    crops = []
    for path in data.list_images(args.data):
        img = data.load_image(path)
        if min(img.shape[:2]) >= 96:
            top, left = rng.integers(0, img.shape[0] - 95), rng.integers(0, img.shape[1] - 95)
            crops.append(np.ascontiguousarray(img[top : top + 96, left : left + 96]))
        if len(crops) == args.images:
            break
    clean = [data.bicubic_downscale(c, 4) for c in crops]
    rows = {**STAGES, "default mix (training)": None, "every stage on": {k: v for s in STAGES.values()
                                                                      for k, v in s.items()}}
    strip = [("HR", crops[0]), ("bicubic LR", clean[0])]
    print("| stage (alone) | Y-PSNR vs clean LR | Cb/Cr PSNR vs clean LR | ms / sample |")
    print("|---|---|---|---|")
    for name, stage in rows.items():
        deg = data.Degradation("realistic") if stage is None else data.Degradation("realistic", **{**OFF, **stage})
        started = time.perf_counter()
        outs = [deg(c, 4, np.random.default_rng([1, i])) for i, c in enumerate(crops)]
        ms = (time.perf_counter() - started) / len(crops) * 1000
        y = _psnr([(_ycbcr(o)[..., 0], _ycbcr(c)[..., 0]) for o, c in zip(outs, clean)])
        chroma = _psnr([(_ycbcr(o)[..., 1:], _ycbcr(c)[..., 1:]) for o, c in zip(outs, clean)])
        print(f"| {name} | {y:.2f} | {chroma:.2f} | {ms:.1f} |")
        strip.append((name, outs[0]))
    if args.out:
        side, label = 96 * 2, 12
        canvas = Image.new("RGB", (side * len(strip), side + label), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (name, img) in enumerate(strip):
            tile = Image.fromarray(img).resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (i * side, label))
            draw.text((i * side + 2, 0), name[:32], fill="black")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
