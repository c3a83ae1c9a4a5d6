#!/usr/bin/env bash
# Recipe of weights/srresnet_x2.pt: SRResNet x2 (one x2 PixelShuffle stage) on pixel MSE, bicubic degradation,
# T91 + wallpaper photographs, 96-px HR crops (48-px LR).
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srresnet_x2}" \
    --phase mse --arch srresnet -s 2 --degrade bicubic \
    --data ../shared/data/train/T91 --data data/photos \
    --batch-size 16 --hr-crop 96 --lr 2e-4 --lr-decay-at 0.8 --lr-decay 0.25 \
    --steps "${STEPS:-9000}" --val-every 500 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --export weights/srresnet_x2.pt "$@"
