"""Throughput table: `vsr bench` for several models, sizes and precisions, measured one after another in one run.

    .venv/bin/python scripts/bench_table.py                      # srresnet + espcn x4, 160x120 and 320x240, CPU
    .venv/bin/python scripts/bench_table.py --precision fp32 bf16 --sizes 160x120 --frames 32

Each row is one `vsr.bench.run_bench` call (decode-only, model-only, encode-only and end-to-end fps of the real
pipeline on a generated clip); the last column pair compares each precision with the fp32 row of the same model
and size, so the speed-up of bf16 is read off one table.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from vsr import bench
from vsr.models.fast import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["srresnet", "espcn"])
    parser.add_argument("--sizes", nargs="+", default=["160x120", "320x240"])
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"], help="fp32, bf16, fp16 or auto")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", metavar="FILE", help="also write every row as JSON lines here")
    args = parser.parse_args()
    keep_freed_memory()  # as the `vsr` command does, so the rows are the speeds `vsr bench` shows

    rows = []
    for model in args.models:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            for precision in args.precision:
                row = bench.run_bench(
                    model=model, scale=args.scale, width=width, height=height, frames=args.frames,
                    device=args.device, precision=precision, batch_size=args.batch_size,
                )
                base = next((r for r in rows if (r["model"], r["size"], r["precision"]) == (model, size, "fp32")), None)
                if base:
                    row["model_vs_fp32"] = round(row["model_fps"] / base["model_fps"], 2)
                    row["e2e_vs_fp32"] = round(row["end_to_end_fps"] / base["end_to_end_fps"], 2)
                rows.append(row)
                print(f"measured {model} {size} {row['precision']}", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(bench.format_table(rows, extra=[("model_vs_fp32", "model/fp32"), ("e2e_vs_fp32", "e2e/fp32")]))
    if args.json:
        with open(args.json, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
