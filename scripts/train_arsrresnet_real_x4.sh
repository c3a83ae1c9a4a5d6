#!/usr/bin/env bash
# arsrresnet_real_x4 (experimental, not shipped): rsrresnet with its past motion-compensated (block matching on LR
# luma, vsr/models/recurrent.py), started from the shipped rsrresnet_real_x4 (every layer carries over: step 0 is that
# model with an aligned past). Data, recorder chain and schedule are scripts/train_rsrresnet_real_x4.sh's; only the
# arch, the start, the learning rate and where it writes differ. Resumes from RUN/ckpt.pt; extra flags override.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUN=${RUN:-runs/arsrresnet_real_x4}
exec scripts/train_rsrresnet_real_x4.sh --arch arsrresnet --init-from vsr/weights/rsrresnet_real_x4.pt \
    --frames 6 --lr 1e-4 --export "${EXPORT:-$RUN/export.pt}" "$@"
