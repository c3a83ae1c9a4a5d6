#!/usr/bin/env bash
# rsrresnet_x4: the streaming recurrent model for clean sources (bicubic LR, the papers' "BI" degradation), on
# sequences of 6 consecutive frames of the project's clips plus T91 photographs moved by a virtual camera (never
# ../shared/data/video_validation: that clip is the held-out yardstick), started from the shipped per-frame
# srresnet_x4 (the recurrent layers start at zero, so step 0 is that model less one residual block).
# Runs again after any interruption: it resumes from RUN/ckpt.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-runs/rsrresnet_x4}
[ -d data/clips/train ] || .venv/bin/python -m vsr prepare ../shared/data/video data/clips --holdout 0.1 --max-frames 600
resume=()
[ -f "$run/ckpt.pt" ] && resume=(--resume)
exec .venv/bin/python -m vsr train --run "$run" \
    --phase mse --arch rsrresnet -s 4 --frames 6 --degrade bicubic --init-from vsr/weights/srresnet_x4.pt \
    --data data/clips/train --data ../shared/data/train/T91 --photo-share 0.25 \
    --batch-size 4 --hr-crop 128 --lr 1e-4 --ema-decay 0.995 \
    --steps "${STEPS:-20000}" --val-every 200 --ckpt-every 100 --log-every 10 --workers 0 --seed 0 \
    --val data/clips/holdout --export vsr/weights/rsrresnet_x4.pt "${resume[@]}" "$@"
