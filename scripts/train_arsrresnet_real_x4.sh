#!/usr/bin/env bash
# arsrresnet_real_x4: rsrresnet with its past motion-compensated (block matching on LR luma, vsr/models/recurrent.py),
# started from the shipped rsrresnet_real_x4 (every layer carries over: step 0 is that model with an aligned past),
# on sequences of 6 consecutive frames of the project's clips (never ../shared/data/video_validation) and T91
# photographs moved by a virtual camera, with the recorder chain of srresnet_real_x4 applied as video.
# Runs again after any interruption: it resumes from RUN/ckpt.pt. Extra flags override (e.g. --threads 1).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-runs/arsrresnet_real_x4}
[ -d data/clips/train ] || .venv/bin/python -m vsr prepare ../shared/data/video data/clips --holdout 0.1 --max-frames 600
resume=()
[ -f "$run/ckpt.pt" ] && resume=(--resume)
exec .venv/bin/python -m vsr train --run "$run" \
    --phase mse --arch arsrresnet -s 4 --frames 6 --degrade realistic --init-from vsr/weights/rsrresnet_real_x4.pt \
    --camera-noise-prob 0 --interlace-prob 0 --chroma-prob 0 --mpeg2-prob 0 --second-order-prob 0 \
    --data data/clips/train --data ../shared/data/train/T91 --photo-share 0.15 \
    --batch-size 4 --hr-crop 128 --lr 1e-4 --ema-decay 0.995 \
    --steps "${STEPS:-20000}" --val-every 200 --ckpt-every 100 --log-every 10 --workers 0 --seed 0 \
    --val data/clips/holdout --export "${EXPORT:-runs/arsrresnet_real_x4/export.pt}" "${resume[@]}" "$@"
