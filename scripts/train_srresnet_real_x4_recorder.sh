#!/usr/bin/env bash
# Candidate for vsr/weights/srresnet_real_x4.pt: the shipped srresnet_real_x4 continued on pixel MSE with the whole
# recorder chain of `--degrade realistic` (vsr.data.Degradation: blur, sensor/camera noise, interlaced capture,
# 4:2:0 / 4:1:1 chroma, JPEG, MPEG-2 at DVD bitrates or libx264 at CRF 18-35, bwdif/yadif/line-doubling
# deinterlacing, a Real-ESRGAN-style second round). Exports to the run folder, not weights/: it replaces the shipped
# file only if it beats it on scripts/footage_benchmark.py --weights runs/srresnet_real_x4_recorder/export.pt.
# Issue 12 ran it for 720 steps on a shared 2-vCPU machine (STEPS=720): not better yet (vsr/weights/README.md).
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srresnet_real_x4_recorder}" \
    --phase mse --arch srresnet -s 4 --degrade realistic --init-from "${INIT:-vsr/weights/srresnet_real_x4.pt}" \
    --data ../shared/data/train/T91 --data data/photos --data data/frames \
    --batch-size 16 --hr-crop 96 --lr 1e-4 --lr-decay-at 0.8 --lr-decay 0.25 \
    --steps "${STEPS:-2500}" --val-every 500 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --val-dir data/frames/holdout --export "${RUN:-runs/srresnet_real_x4_recorder}/export.pt" "$@"
