#!/usr/bin/env bash
# Recipe of vsr/weights/srresnet_real_x4.pt: the srresnet_x4 network fine-tuned on pixel MSE with the realistic
# degradation (Gaussian blur -> bicubic /4 -> Gaussian/Poisson noise -> optional JPEG -> real libx264 at CRF 18-35),
# so it restores compressed surveillance/archival footage instead of sharpening its blocks. Data adds the training
# frames of ../shared/data/video (data/frames/train; the last 20 % of each clip, data/frames/holdout, is the
# held-out set: vsr eval data/frames/holdout -s 4 -m srresnet_real --degrade realistic). Starts from srresnet_x4.
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srresnet_real_x4}" \
    --phase mse --arch srresnet -s 4 --degrade realistic --init-from vsr/weights/srresnet_x4.pt \
    --data ../shared/data/train/T91 --data data/photos --data data/frames \
    --batch-size 16 --hr-crop 96 --lr 1e-4 --lr-decay-at 0.7 --lr-decay 0.25 \
    --steps "${STEPS:-1500}" --val-every 500 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --val data/frames/holdout --export vsr/weights/srresnet_real_x4.pt "$@"
