#!/usr/bin/env bash
# rsrresnet_real_x4: the streaming recurrent model (vsr/models/recurrent.py) on sequences of 6 consecutive frames
# of the project's clips (never ../shared/data/video_validation: that clip is the held-out yardstick), started from
# the shipped per-frame srresnet_real_x4 (its layers carry over; the recurrent ones start at zero, so step 0 is the
# per-frame model), with srresnet_real_x4's own recorder chain (blur, noise, H.264), applied as video.
# Runs again after any interruption: it resumes from RUN/ckpt.pt. On 2 vCPUs give it one core and one thread
# (`taskset -c 1 scripts/train_rsrresnet_real_x4.sh --threads 1`) when something else shares the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-runs/rsrresnet_real_x4}
[ -d data/clips/train ] || .venv/bin/python -m vsr prepare ../shared/data/video data/clips --holdout 0.1 --max-frames 600
resume=()
[ -f "$run/ckpt.pt" ] && resume=(--resume)
exec .venv/bin/python -m vsr train --run "$run" \
    --phase mse --arch rsrresnet -s 4 --frames 6 --degrade realistic --init-from vsr/weights/srresnet_real_x4.pt \
    --camera-noise-prob 0 --interlace-prob 0 --chroma-prob 0 --mpeg2-prob 0 --second-order-prob 0 \
    --data data/clips/train --data ../shared/data/train/T91 --photo-share 0.15 \
    --batch-size 4 --hr-crop 128 --lr 1e-4 --ema-decay 0.995 \
    --steps "${STEPS:-20000}" --val-every 200 --ckpt-every 100 --log-every 10 --workers 0 --seed 0 \
    --val data/clips/holdout --export vsr/weights/rsrresnet_real_x4.pt "${resume[@]}" "$@"
