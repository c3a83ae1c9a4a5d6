#!/usr/bin/env bash
# Recipe of vsr/weights/srgan_x4.pt: SRGAN (Ledig et al. 2017) from vsr/weights/srresnet_x4.pt against the SRGAN
# discriminator, adversarial weight 1e-3, lr 1e-4 then 1e-5 (at half the steps). 1 000 steps: on 2 CPU cores a GAN
# step costs about twice an SRResNet step; a GPU should run the paper's 10^5.
# Perceptual loss: the paper's VGG19 phi5,4 needs ImageNet VGG19 weights, which these machines do not have. With a
# VGG file (VGG_WEIGHTS=/path/vgg19-dcbb9e9d.pth) this recipe uses it (SRGAN-VGG54, no pixel MSE); without one it
# trains with --perceptual none (pixel MSE + adversarial: the paper's SRGAN-MSE variant) and says so in the weights.
if [ -n "${VGG_WEIGHTS:-}" ]; then
    perceptual=(--perceptual vgg --vgg-weights "$VGG_WEIGHTS")
else
    perceptual=(--perceptual none)
fi
exec "$(dirname "$0")/train_run.sh" "${RUN:-runs/srgan_x4}" \
    --phase gan --arch srresnet -s 4 --degrade bicubic --init-from vsr/weights/srresnet_x4.pt "${perceptual[@]}" \
    --data ../shared/data/train/T91 --data data/photos --val ../shared/data/benchmarks/Set5 \
    --batch-size 16 --hr-crop 96 --lr 1e-4 --adv-weight 1e-3 \
    --steps "${STEPS:-1000}" --val-every 500 --ckpt-every 250 --log-every 25 --workers 1 --seed 0 \
    --export vsr/weights/srgan_x4.pt "$@"
