#!/usr/bin/env bash
# Recipe of vsr/weights/srresnet_x2.pt: SRResNet x2 (one x2 PixelShuffle stage) on pixel MSE, bicubic degradation,
# T91 + wallpaper photographs. Its trunk (first conv, 16 residual blocks, first upsampling conv, last conv) starts
# from vsr/weights/srresnet_x4.pt, as EDSR starts one scale from another: the features a x4 model learnt are the ones x2
# needs, so x2 gets there in a fraction of the steps. 48-px HR crops keep the LR crop (24 px) and the cost per step of
# the x4 recipe.
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srresnet_x2}" \
    --phase mse --arch srresnet -s 2 --degrade bicubic --init-from vsr/weights/srresnet_x4.pt \
    --data ../shared/data/train/T91 --data data/photos --val ../shared/data/benchmarks/Set5 \
    --batch-size 16 --hr-crop 48 --lr 2e-4 --lr-decay-at 0.8 --lr-decay 0.25 \
    --steps "${STEPS:-2500}" --val-every 250 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --export vsr/weights/srresnet_x2.pt "$@"
