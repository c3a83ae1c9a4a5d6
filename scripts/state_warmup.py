"""PSNR by frames since a reset: how fast a recurrent model's state pays, against the per-frame model it started from
and against itself with its state reset at every frame ("no past": what the state alone is worth).

Every held-out run of consecutive frames (`vsr prepare --holdout` output, never trained on) is degraded as one clip
(the recorder chain of scripts/train_rsrresnet_real_x4.sh unless --bicubic), then upscaled in order from a fresh state;
the table is the mean Y-PSNR at each frame index over the runs, so frame 0 is what a scene cut or the first frame of a
file gets. With --clip, the runs are consecutive windows of a clip's busiest stretch instead (the validation clip:
the footage benchmark's crop). Usage:

    python scripts/state_warmup.py --recurrent vsr/weights/rsrresnet_real_x4.pt --per-frame vsr/weights/srresnet_real_x4.pt \
        --holdout data/clips/holdout --frames 24
    python scripts/state_warmup.py --recurrent ... --per-frame ... --frames 16 --runs 3 \
        --clip ../shared/data/video_validation/car_park_overhead_768x432.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from vsr import data, metrics, models
from vsr.data.sequences import find_runs
from vsr.models.runner import Upscaler
from vsr.train.sequences import load_run
from vsr.precision import Precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from footage_benchmark import clip_run  # noqa: E402

# The recorder chain the realistic models were trained on (scripts/train_rsrresnet_real_x4.sh's flags).
RECORDER = dict(camera_noise_prob=0, interlace_prob=0, chroma_prob=0, mpeg2_prob=0, second_order_prob=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recurrent", required=True, help="weights file or shipped name of the recurrent model")
    parser.add_argument("--per-frame", required=True, help="weights file or shipped name of the per-frame model")
    parser.add_argument("--holdout", default="data/clips/holdout")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--crop", type=int, default=192, help="centre crop side, HR pixels")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--bicubic", action="store_true", help="clean bicubic LR instead of the recorder chain")
    parser.add_argument("--clip", type=Path, help="instead of --holdout: --runs consecutive windows of --frames from "
                        "this clip's busiest stretch, cropped as the footage benchmark crops it (e.g. the validation "
                        "clip)")
    args = parser.parse_args()

    device = torch.device("cpu")
    precision = Precision("fp32", "scored in fp32")
    nets = {name: models.load_model(name, scale=None) for name in (args.recurrent, args.per_frame)}
    scale = nets[args.recurrent].scale
    degradation = data.Degradation(preset="bicubic") if args.bicubic else data.Degradation(preset="realistic",
                                                                                           **RECORDER)
    if args.clip:
        stretch = clip_run(args.clip, args.frames * args.runs, (256, 192), busiest=True)[0]
        runs = [stretch[i : i + args.frames] for i in range(0, len(stretch) - args.frames + 1, args.frames)]
        source = f"windows of {args.clip.name}'s busiest stretch"
    else:
        found, _ = find_runs(data.list_images(args.holdout), args.frames)
        runs = [load_run(run[: args.frames], args.crop, scale)
                for run in sorted(found, key=len, reverse=True)[: args.runs]]
        source = f"held-out runs of {args.holdout}"
    if not runs:
        raise SystemExit(f"no run of {args.frames} consecutive frames in {args.clip or args.holdout}")
    psnr = {name: np.zeros((len(runs), args.frames)) for name in nets}
    bicubic = np.zeros((len(runs), args.frames))
    no_past = np.zeros((len(runs), args.frames))
    for i, hr in enumerate(runs):
        side_h, side_w = hr.shape[1:3]
        lr = degradation.degrade_clip(hr, scale, np.random.default_rng([0, i]))
        for name, net in nets.items():
            sr = Upscaler(net, device, precision)(torch.from_numpy(lr)).numpy()
            psnr[name][i] = [metrics.psnr_ssim_y(sr[t], hr[t], scale)[0] for t in range(args.frames)]
        alone = Upscaler(nets[args.recurrent], device, precision)
        for t in range(args.frames):
            alone.reset_state()
            sr = alone(torch.from_numpy(lr[t : t + 1])).numpy()[0]
            no_past[i, t] = metrics.psnr_ssim_y(sr, hr[t], scale)[0]
        bicubic[i] = [metrics.psnr_ssim_y(data.bicubic_upscale(lr[t], scale), hr[t], scale)[0]
                      for t in range(args.frames)]
    chain = "bicubic LR" if args.bicubic else "recorder chain"
    print(f"Y-PSNR by frames since a reset: {len(runs)} {source}, {chain}, "
          f"{side_w}x{side_h} crops, fp32, CPU")
    print(f"| frame | bicubic | {args.per_frame} | {args.recurrent} | its gain | same, no past | the state's gain |")
    print("|---|---|---|---|---|---|---|")
    per_frame, recurrent, alone = psnr[args.per_frame].mean(0), psnr[args.recurrent].mean(0), no_past.mean(0)
    for t in range(args.frames):
        print(f"| {t} | {bicubic[:, t].mean():.2f} | {per_frame[t]:.2f} | {recurrent[t]:.2f} | "
              f"{recurrent[t] - per_frame[t]:+.2f} | {alone[t]:.2f} | {recurrent[t] - alone[t]:+.2f} |")
    later = slice(min(8, args.frames - 1), None)  # past the warm-up vsr enhance gives a window (8 frames)
    print(f"mean over frames {later.start}-{args.frames - 1}: gain over {args.per_frame} "
          f"{(recurrent - per_frame)[later].mean():+.3f} dB, of which the state {(recurrent - alone)[later].mean():+.3f}")


if __name__ == "__main__":
    main()
