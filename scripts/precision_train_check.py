"""Training in bf16 vs fp32 on the same seed: steps/s, and whether bf16's validation PSNR tracks fp32's.

    .venv/bin/python scripts/precision_train_check.py                 # SRResNet x4, batch 16, 500 steps each
    .venv/bin/python scripts/precision_train_check.py --steps 100 --val-every 50

Both runs use `vsr train` itself (same data, seed, data order with --workers 0), differing only in --precision.
Prints one table: steps/s per precision (log windows after the first, i.e. after warm-up) and Set5 PSNR at every
validation step with the difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from vsr.train import TrainConfig, train

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def run(precision: str, args) -> list[dict]:
    run_dir = Path(args.runs) / f"precision_{precision}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(
        phase="mse", data=args.data, scale=4, arch="srresnet", batch_size=args.batch_size, hr_crop=96,
        steps=args.steps, lr=2e-4, workers=0, seed=0, precision=precision, device="cpu", run=str(run_dir),
        val_every=args.val_every, ckpt_every=args.steps, log_every=args.log_every, val_dir=args.val_dir,
    )
    train(cfg, progress=False)
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", nargs="+", default=[str(SHARED / "train" / "T91")])
    parser.add_argument("--val-dir", default=str(SHARED / "benchmarks" / "Set5"))
    parser.add_argument("--runs", default="runs")
    args = parser.parse_args()

    logs = {p: run(p, args) for p in ("fp32", "bf16")}
    speed = {}
    for precision, lines in logs.items():
        windows = [line["it_s"] for line in lines if "it_s" in line][1:]  # the first window holds the warm-up
        speed[precision] = sum(windows) / max(len(windows), 1)
    print(f"\nSRResNet x4, batch {args.batch_size}, 96-px HR crops, CPU, {args.steps} steps, seed 0")
    print(f"steps/s: fp32 {speed['fp32']:.3f}, bf16 {speed['bf16']:.3f}, bf16/fp32 {speed['bf16'] / speed['fp32']:.2f}x")
    vals = {p: {line["step"]: line["val"]["psnr_y"] for line in lines if "val" in line} for p, lines in logs.items()}
    print("\n| step | fp32 Set5 PSNR | bf16 Set5 PSNR | bf16 - fp32 |\n|---|---|---|---|")
    for step in sorted(set(vals["fp32"]) & set(vals["bf16"])):
        a, b = vals["fp32"][step], vals["bf16"][step]
        print(f"| {step} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")


if __name__ == "__main__":
    main()
