#!/usr/bin/env bash
# Recipe of weights/srresnet_real_x4.pt: the srresnet_x4 network fine-tuned on pixel MSE with the realistic
# degradation, a recorder chain through the real codecs (vsr.data.Degradation: blur, sensor/camera noise, interlaced
# capture, 4:2:0 / 4:1:1 chroma, JPEG, MPEG-2 at DVD bitrates or libx264 at CRF 18-35, bwdif/yadif/line-doubling
# deinterlacing, and a Real-ESRGAN-style second round), so it restores compressed surveillance/archival footage
# instead of sharpening its blocks. Data adds the training frames of ../shared/data/video (data/frames/train; the
# last 20 % of each clip, data/frames/holdout, is held out and scored by scripts/footage_benchmark.py).
# History: 1 500 steps from weights/srresnet_x4.pt with the first realistic chain (blur, noise, JPEG, H.264), then
# this recipe continues from that file (INIT=... to start elsewhere) with the recorder chain.
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srresnet_real_x4_v2}" \
    --phase mse --arch srresnet -s 4 --degrade realistic --init-from "${INIT:-weights/srresnet_real_x4.pt}" \
    --data ../shared/data/train/T91 --data data/photos --data data/frames \
    --batch-size 16 --hr-crop 96 --lr 1e-4 --lr-decay-at 0.8 --lr-decay 0.25 \
    --steps "${STEPS:-2500}" --val-every 500 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --val-dir data/frames/holdout --export weights/srresnet_real_x4.pt "$@"
