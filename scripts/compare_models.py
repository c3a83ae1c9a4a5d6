"""Side-by-side crops of the shipped models: LR (nearest) | bicubic | each model | HR, one row per test image.

    .venv/bin/python scripts/compare_models.py -o vsr/weights/comparison.png
    .venv/bin/python scripts/compare_models.py --models srresnet_x4 srgan_x4 --images ../shared/data/benchmarks/Set14/baboon.png

LR is made with the paper's bicubic downscale (or --degrade realistic); each column is labelled with the model and
its PSNR (Y, border = scale) on that crop, so the picture and the numbers can be read together.

It also prints a table over --texture-set (Set14): mean PSNR, and how much high-frequency content each output has
relative to the HR images (mean gradient energy and Laplacian variance of Y, ratio to HR's: 1.0 = as much texture as
the original; MSE-trained models sit below, blurred; a GAN should come closer to 1.0 at a PSNR cost).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vsr import data, metrics, models
from vsr.pipeline import Upscaler
from vsr.precision import Precision

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO.parent / "shared" / "data" / "benchmarks"
DEFAULT_IMAGES = [f"{BENCH}/Set14/baboon.png:140,60", f"{BENCH}/Set14/comic.png:60,90", f"{BENCH}/Set5/butterfly.png:64,64"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["srresnet_x4", "srgan_x4", "srresnet_real_x4", "espcn_x4"])
    parser.add_argument("--images", nargs="+", default=DEFAULT_IMAGES, help="PATH or PATH:X,Y (HR crop corner)")
    parser.add_argument("--crop", type=int, default=128, help="HR crop side")
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour enlargement of every tile")
    parser.add_argument("--degrade", default="bicubic", choices=["bicubic", "realistic"])
    parser.add_argument("--texture-set", default=f"{BENCH}/Set14", help="folder for the texture table ('' to skip)")
    parser.add_argument("-o", "--output", default="vsr/weights/comparison.png")
    args = parser.parse_args()

    nets = {}
    for name in args.models:
        path = models.weights_dir() / f"{name}.pt"
        if path.exists():
            nets[name] = Upscaler(models.load_model(path, scale=None), torch.device("cpu"), Precision("fp32", "pictures"))
    scale = 4
    rows, labels = [], None
    for spec in args.images:
        path, _, corner = spec.partition(":")
        x0, y0 = (int(v) for v in corner.split(",")) if corner else (0, 0)
        hr = metrics.mod_crop(data.load_image(path), scale)
        lr = data.Degradation(preset=args.degrade)(hr, scale, np.random.default_rng(0))
        tiles = {"LR": np.repeat(np.repeat(lr, scale, 0), scale, 1), "bicubic": data.bicubic_upscale(lr, scale)}
        for name, upscaler in nets.items():
            tiles[name] = _upscale(upscaler, lr)
        tiles["HR"] = hr
        ys, xs = slice(y0, y0 + args.crop), slice(x0, x0 + args.crop)
        row = []
        for name, img in tiles.items():
            crop = img[ys, xs]
            score = "" if name in ("LR", "HR") else f" {metrics.psnr(metrics.rgb_to_y(crop), metrics.rgb_to_y(hr[ys, xs])):.2f}"
            row.append((f"{name}{score}", crop))
        rows.append(row)
        labels = [name for name in tiles]
    side = args.crop * args.zoom
    sheet = Image.new("RGB", (len(labels) * (side + 4), len(rows) * (side + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (label, crop) in enumerate(row):
            tile = Image.fromarray(np.ascontiguousarray(crop)).resize((side, side), Image.NEAREST)
            x, y = c * (side + 4), r * (side + 18)
            sheet.paste(tile, (x, y + 16))
            draw.text((x + 2, y + 2), label, fill="black")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output}: columns {', '.join(labels)}")
    if args.texture_set:
        texture_table(nets, Path(args.texture_set), scale)


def _upscale(upscaler: Upscaler, lr: np.ndarray) -> np.ndarray:
    return upscaler(torch.from_numpy(lr.copy())[None])[0].numpy()


def texture_table(nets: dict, folder: Path, scale: int) -> None:
    """Mean PSNR and high-frequency content relative to HR of each model over the images of `folder`."""
    paths = data.list_images(folder)
    sums = {name: np.zeros(3) for name in ["bicubic", *nets]}
    for path in paths:
        hr = metrics.mod_crop(data.load_image(path), scale)
        lr = data.bicubic_downscale(hr, scale)
        hr_y = metrics.rgb_to_y(hr)
        hr_grad, hr_lap = metrics.sharpness(hr_y)
        outputs = {"bicubic": data.bicubic_upscale(lr, scale)}
        outputs.update({name: _upscale(up, lr) for name, up in nets.items()})
        for name, sr in outputs.items():
            sr_y = metrics.rgb_to_y(sr)
            grad, lap = metrics.sharpness(sr_y)
            sums[name] += (metrics.psnr(sr_y, hr_y, border=scale), grad / hr_grad, lap / hr_lap)
    print(f"\n{folder.name} ({len(paths)} images, x{scale}, bicubic LR):\n")
    print("| model | PSNR (Y) | gradient energy / HR | Laplacian variance / HR |")
    print("|---|---|---|---|")
    for name, total in sums.items():
        psnr, grad, lap = total / len(paths)
        print(f"| {name} | {psnr:.2f} | {grad:.2f} | {lap:.2f} |")


if __name__ == "__main__":
    main()
