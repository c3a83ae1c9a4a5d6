"""How much any temporal model could gain on a clip: the per-frame model's error split by whether the frames before
hold another view of each pixel.

A multi-frame model gains over a per-frame one only where the past shows the scene differently: motion gives new
sub-pixel samples, fresh noise gives new draws. Where the scene was still in every frame given so far (the clean LR
never changed by more than TAU grey levels there), the past holds the same samples again, so the per-frame model's
error there stays. This script degrades the footage benchmark's run of a clip (the same frames, crop, chains and
seeds as scripts/footage_benchmark.py), upscales it with a per-frame model and reports, per chain:

- the share of pixels that are still and the share of the per-frame model's squared error they hold;
- "moving -> 0": the mean Y-PSNR if every error outside the still pixels vanished (a generous ceiling: no model
  recovers moving detail exactly);
- "still averaged": the mean Y-PSNR with only the still pixels' error changed, to that of the per-frame model given
  an input where the still pixels are the mean of every frame so far (what perfectly aligned averaging of the past
  gives there: it pays where noise or a codec differ from frame to frame on a still scene);
- how fast the rest moves: the median and 90th percentile of the clean LR's block motion between consecutive frames
  over the moving pixels, in LR pixels per frame (an aligned model must search at least this far).

PSNRs are per frame then averaged, as the benchmark's PSNR. Usage (defaults: the validation clip, the
benchmark's chains, srresnet_x4 for the clean chain and srresnet_real_x4 for the recorder chains):

    python scripts/temporal_headroom.py --tau 2 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from footage_benchmark import CHAINS, CLEAN, SCALE, SHARED, chain, clip_run, clip_seed  # noqa: E402
from vsr import metrics, models  # noqa: E402
from vsr.models.recurrent import block_motion  # noqa: E402
from vsr.models.runner import Upscaler  # noqa: E402
from vsr.precision import Precision  # noqa: E402

VALIDATION = SHARED / "video_validation" / "car_park_overhead_768x432.mp4"
WEIGHTS = Path(__file__).resolve().parents[1] / "vsr" / "weights"
BATCH = 8


def still_masks(clean_lr: np.ndarray, lead: int, tau: float) -> np.ndarray:
    """(N, h, w) bool for each scored frame: True where the clean LR luma stayed within ``tau`` of the frame's own in
    every frame given so far (lead-in included), also across the 3x3 neighbourhood (a pixel next to motion is not
    counted still: a model sees its neighbours)."""
    ys = np.stack([metrics.rgb_to_y(f) for f in clean_lr])
    # The largest change from frame i over frames 0..i is against the running maximum or minimum.
    highest, lowest = np.maximum.accumulate(ys), np.minimum.accumulate(ys)
    moved = np.maximum(highest - ys, ys - lowest)[lead:] > tau
    grown = np.lib.stride_tricks.sliding_window_view(np.pad(moved, ((0, 0), (1, 1), (1, 1))), (3, 3), axis=(1, 2))
    return ~grown.any(axis=(-2, -1))


def motion_sizes(clean_lr: np.ndarray, lead: int, radius: int = 12) -> np.ndarray:
    """(N, h, w) length of each scored frame's block motion from the frame before, LR pixels (searched up to
    ``radius``)."""
    frames = torch.from_numpy(clean_lr).permute(0, 3, 1, 2).float() / 255
    sizes = [block_motion(frames[i : i + 1], frames[max(i - 1, 0) : max(i, 1)], radius)[0].norm(dim=0).numpy()
             for i in range(lead, len(frames))]  # a clip's first frame has none before it: no motion
    return np.stack(sizes)


def averaged_input(lr: np.ndarray, lead: int, still: np.ndarray) -> np.ndarray:
    """The scored frames of ``lr`` with each still pixel replaced by its mean over every frame so far."""
    running = np.cumsum(lr.astype(np.float64), axis=0)
    out = []
    for t, i in enumerate(range(lead, len(lr))):
        mean = np.clip(np.rint(running[i] / (i + 1)), 0, 255).astype(np.uint8)
        out.append(np.where(still[t][..., None], mean, lr[i]))
    return np.stack(out)


def squared_errors(upscaler: Upscaler, lr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """(N, H - 2*SCALE, W - 2*SCALE) squared Y error of the per-frame model's output, borders cropped as the PSNR."""
    sr = np.concatenate([upscaler(torch.from_numpy(lr[i : i + BATCH])).numpy() for i in range(0, len(lr), BATCH)])
    return np.stack([(metrics.crop_border(metrics.rgb_to_y(s) - metrics.rgb_to_y(h), SCALE)) ** 2
                     for s, h in zip(sr, hr)])


def mean_psnr(errors: np.ndarray) -> float:
    return float(np.mean([10 * np.log10(255.0**2 / max(e.mean(), 1e-10)) for e in errors]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=VALIDATION)
    parser.add_argument("--chains", nargs="+", default=list(CHAINS), choices=list(CHAINS))
    parser.add_argument("--tau", type=float, nargs="+", default=[2.0, 8.0],
                        help="grey levels of clean-LR change below which a pixel counts as still")
    parser.add_argument("--clean-model", default=str(WEIGHTS / "srresnet_x4.pt"),
                        help="per-frame model for the clean chain")
    parser.add_argument("--real-model", default=str(WEIGHTS / "srresnet_real_x4.pt"),
                        help="per-frame model for the recorder chains")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--lead-in", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hr, lead, start = clip_run(args.clip, args.frames, (256, 192), args.lead_in, busiest=True)
    clean_lr = chain(CLEAN).degrade_clip(hr, SCALE, clip_seed(args.seed, CLEAN, args.clip.name))
    masks = {tau: still_masks(clean_lr, lead, tau) for tau in args.tau}
    motion = motion_sizes(clean_lr, lead)
    precision = Precision("fp32", "scored in fp32")
    upscalers = {name: Upscaler(models.load_model(name, scale=None), torch.device("cpu"), precision)
                 for name in {args.clean_model, args.real_model}}
    print(f"{args.clip.name}: frames {start}-{start + args.frames - 1} after {lead} lead-in, "
          f"{hr.shape[2]}x{hr.shape[1]} crop; Y-PSNR, fp32\n")
    print("| chain | per-frame model | tau | still px | still share of error | per-frame | moving -> 0 "
          "| still averaged | motion, LR px/frame (median, p90) |")
    print("|---|---|---|---|---|---|---|---|---|")
    # Per TAU, what does not depend on the chain: the still mask at HR (borders cropped as the PSNR) and the speed of
    # the rest.
    at_hr = {}
    for tau, lr_still in masks.items():
        moving = motion[~lr_still]
        speed = f"{np.median(moving):.1f}, {np.quantile(moving, 0.9):.1f}" if moving.size else "-"
        still = lr_still.repeat(SCALE, axis=1).repeat(SCALE, axis=2)[:, SCALE:-SCALE, SCALE:-SCALE]
        at_hr[tau] = still, speed
    for name in args.chains:
        model = args.clean_model if name == CLEAN else args.real_model
        label = Path(model).stem
        lr = clean_lr if name == CLEAN else chain(name).degrade_clip(hr, SCALE, clip_seed(args.seed, name,
                                                                                         args.clip.name))
        errors = squared_errors(upscalers[model], lr[lead:], hr[lead:])
        actual = mean_psnr(errors)
        for tau, lr_still in masks.items():
            still, speed = at_hr[tau]
            averaged = squared_errors(upscalers[model], averaged_input(lr, lead, lr_still), hr[lead:])
            moving_zero = mean_psnr(errors * still)
            only_still = mean_psnr(averaged * still + errors * ~still)
            share = float((errors * still).sum() / errors.sum())
            print(f"| {name} | {label} | {tau:g} | {still.mean():.1%} | {share:.1%} | {actual:.2f} | "
                  f"{moving_zero:.2f} | {only_still:.2f} | {speed} |", flush=True)

if __name__ == "__main__":
    main()
