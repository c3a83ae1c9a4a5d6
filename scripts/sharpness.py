"""No-reference sharpness of upscaled videos: mean gradient energy and Laplacian variance of the Y channel per frame.

    .venv/bin/python scripts/sharpness.py out_srresnet.mp4 out_bicubic.mp4

Real footage has no ground truth at the upscaled size, so this compares outputs of the same input with each other:
a model that restores detail has more high-frequency energy than bicubic (which only interpolates). Read it
together with a full-reference check (`vsr eval --video CLIP`, which downscales the clip's own frames and scores
the model against them), since noise also raises these figures.
"""

from __future__ import annotations

import argparse

import av

from vsr.metrics import rgb_to_y, sharpness


def video_sharpness(path: str, max_frames: int | None = None) -> tuple[int, float, float]:
    gradient, laplacian, frames = 0.0, 0.0, 0
    with av.open(path) as container:
        for frame in container.decode(video=0):
            g, lap = sharpness(rgb_to_y(frame.to_ndarray(format="rgb24")))
            gradient, laplacian, frames = gradient + g, laplacian + lap, frames + 1
            if max_frames and frames >= max_frames:
                break
    return frames, gradient / frames, laplacian / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args()
    rows = [(path, *video_sharpness(path, args.max_frames)) for path in args.videos]
    base = rows[-1]
    print(f"| video | frames | gradient energy | Laplacian variance | vs {base[0]} |\n|---|---|---|---|---|")
    for path, frames, gradient, laplacian in rows:
        print(f"| {path} | {frames} | {gradient:.1f} | {laplacian:.1f} | ×{gradient / base[2]:.2f} gradient, "
              f"×{laplacian / base[3]:.2f} Laplacian |")


if __name__ == "__main__":
    main()
