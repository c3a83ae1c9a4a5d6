#!/usr/bin/env bash
# Recipe of vsr/weights/espcn_x4.pt, the fast CPU model: ESPCN (Shi et al. 2016: 5x5 64, 3x3 32, 3x3 3*16, pixel shuffle,
# tanh) on pixel MSE, bicubic degradation, T91 + wallpaper photographs. A small net takes a larger learning rate.
# Run it again after an interruption and it continues from runs/espcn_x4/ckpt.pt.
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/espcn_x4}" \
    --phase mse --arch espcn -s 4 --degrade bicubic \
    --data ../shared/data/train/T91 --data data/photos --val ../shared/data/benchmarks/Set5 \
    --batch-size 16 --hr-crop 96 --lr 1e-3 --lr-decay-at 0.7 --lr-decay 0.1 \
    --steps "${STEPS:-30000}" --val-every 2500 --ckpt-every 2500 --log-every 100 --workers 1 --seed 0 \
    --export vsr/weights/espcn_x4.pt "$@"
