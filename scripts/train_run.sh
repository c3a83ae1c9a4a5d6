#!/usr/bin/env bash
# Shared by the weight recipes (scripts/train_*.sh): `vsr train --run RUN ARGS...`, resuming when RUN already has a
# checkpoint, so a recipe interrupted by anything simply runs again. Fetches the training data first if missing.
# `python -m vsr` from the repository root runs this checkout's code, whatever the venv has installed.
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
shift
[ -d data/photos ] && [ -d data/photos_lomiri ] || scripts/fetch_training_data.sh
if [ -f "$run/ckpt.pt" ]; then
    exec .venv/bin/python -m vsr train --run "$run" "$@" --resume
fi
exec .venv/bin/python -m vsr train --run "$run" "$@"
