"""What a reduced precision costs a model: Set5/Set14 PSNR/SSIM (Y, border = scale) in fp32 vs bf16 (vs fp16 on CUDA).

    .venv/bin/python scripts/precision_table.py vsr/weights/srresnet_x4.pt vsr/weights/espcn_x4.pt
    .venv/bin/python scripts/precision_table.py vsr/weights/*.pt --write-meta     # record the verdict in each file

`--write-meta` stores `reduced_precision_max_delta_db` (the largest |PSNR - fp32 PSNR| over the sets, per precision)
in the weights' meta; `--precision auto` keeps fp32 for a model whose figure exceeds 0.02 dB (see vsr/precision.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from vsr import evaluate, models
from vsr.precision import QUALITY_TOLERANCE_DB, cpu_bf16_capability
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "benchmarks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--sets", nargs="+", default=[str(SHARED / "Set5"), str(SHARED / "Set14")])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write-meta", action="store_true", help="record reduced_precision_ok in each weights file")
    args = parser.parse_args()

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    precisions = ["fp32", "bf16"] + (["fp16"] if cuda else [])
    print(f"CPU bf16 units: {cpu_bf16_capability() or 'none'}; device {'cuda' if cuda else 'cpu'}\n")
    print("| weights | set | " + " | ".join(f"{p} PSNR / SSIM" for p in precisions) + " | Δ PSNR vs fp32 |")
    print("|---|---|" + "---|" * len(precisions) + "---|")
    for path in args.weights:
        model = models.load_model(path, scale=None)
        worst = {p: 0.0 for p in precisions[1:]}
        for folder in args.sets:
            scores = {
                p: evaluate.evaluate_folder(folder, model, model.scale, device=args.device, precision=p)
                for p in precisions
            }
            deltas = {p: scores[p]["psnr_y"] - scores["fp32"]["psnr_y"] for p in precisions[1:]}
            for p, d in deltas.items():
                worst[p] = max(worst[p], abs(d))
            cells = " | ".join(f"{scores[p]['psnr_y']:.3f} / {scores[p]['ssim_y']:.4f}" for p in precisions)
            delta_text = ", ".join(f"{p} {d:+.3f} dB" for p, d in deltas.items())
            print(f"| {path.name} | {Path(folder).name} | {cells} | {delta_text} |", flush=True)
        verdict = ", ".join(f"{p} {'ok' if d <= QUALITY_TOLERANCE_DB else 'too lossy'}" for p, d in worst.items())
        print(f"  {path.name}: worst |Δ| " + ", ".join(f"{p} {d:.4f} dB" for p, d in worst.items()) + f" -> {verdict}")
        if args.write_meta:
            _write_meta(path, {"reduced_precision_max_delta_db": {p: round(d, 4) for p, d in worst.items()}})


def _write_meta(path: Path, update: dict) -> None:
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw.setdefault("meta", {}).update(update)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(raw, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
