#!/usr/bin/env python
"""Does the data loader keep up with the trainer? Samples/s of one loader worker per degradation, side by side with
the trainer's steps/s on a fixed batch, in one run on one machine.

    scripts/bench_loader.py                      # T91, batch 16, 96-px crops, x4, SRResNet, bf16 where native
    scripts/bench_loader.py --data data/photos --seconds 20 --json

"workers needed" = steps/s x batch / (samples/s of one worker): below 1, one worker feeds the trainer with time to
spare; each worker is a process, so on a machine with few cores the workers and the trainer share them (this figure
is the pure ratio; a 2-core machine runs the trainer and one worker on the same two cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vsr, not an installed one

from vsr import data, models  # noqa: E402
from vsr.precision import cpu_bf16_capability  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Every stage of the realistic chain forced on: the worst case a worker can draw.
WORST = dict(camera_noise_prob=1.0, interlace_prob=1.0, chroma_prob=1.0, jpeg_prob=1.0, mpeg2_prob=1.0,
             second_order_prob=1.0)


def samples_per_second(dataset: data.PairDataset, seconds: float) -> float:
    dataset[0]  # caches, codec libraries
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        dataset[count]
        count += 1
    return count / (time.perf_counter() - started)


def steps_per_second(scale: int, batch: int, crop: int, seconds: float, bf16: bool) -> float:
    """SRResNet training steps (forward, MSE, backward, Adam) on one fixed batch, as vsr.train runs them on CPU."""
    torch.manual_seed(0)
    net = models.build_model("srresnet", scale=scale).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lq = torch.rand(batch, 3, crop // scale, crop // scale).contiguous(memory_format=torch.channels_last)
    gt = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(net(lq).float(), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "train" / "T91", help="training images")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hr-crop", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per row")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()

    bf16 = cpu_bf16_capability() is not None
    train_rate = steps_per_second(args.scale, args.batch_size, args.hr_crop, args.seconds, bf16)
    rows = []
    for name, degradation in (
        ("bicubic", data.Degradation("bicubic")),
        ("realistic (default mix)", data.Degradation("realistic")),
        ("realistic, every stage on", data.Degradation("realistic", **WORST)),
    ):
        ds = data.PairDataset(args.data, args.scale, args.hr_crop, degradation, length=10**9, seed=0)
        rate = samples_per_second(ds, args.seconds)
        rows.append({"degradation": name, "samples_per_s": rate, "batches_per_s": rate / args.batch_size,
                     "workers_needed": train_rate * args.batch_size / rate})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else \
        platform.machine()
    print(f"CPU: {cpu}, {torch.get_num_threads()} torch threads; trainer: SRResNet x{args.scale}, batch "
          f"{args.batch_size}, {args.hr_crop}-px HR crops, {'bf16' if bf16 else 'fp32'}: {train_rate:.2f} steps/s "
          f"= {train_rate * args.batch_size:.1f} samples/s")
    print("| degradation | samples/s (1 worker) | batches/s (1 worker) | workers needed |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['degradation']} | {row['samples_per_s']:.1f} | {row['batches_per_s']:.2f} | "
              f"{row['workers_needed']:.2f} |")
    if args.json:
        print(json.dumps({"steps_per_s": train_rate, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
