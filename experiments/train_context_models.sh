#!/usr/bin/env bash
# The spatial context models of issue 25 part 5, warm-started from the shipped hyperprior
# rate points: mbt2018 (serial context) and mbt2018-checkerboard share the zoo's g_a, g_s,
# h_a, h_s and z prior; phase 1 trains only the new context_prediction and
# entropy_parameters (CompressAI's layout: no zero-initialised shortcut to the hyperprior,
# so they start from scratch), phase 2 fine-tunes everything (the channel-conditional
# recipe of experiments/train_channel_zoo.sh). Resumable: RESUME=--resume.
#   bash experiments/train_context_models.sh ARCH [LAMBDA_TAG ...]   (default tags: 0067 0018)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
PHASE1=${PHASE1:-1500}
LR1=${LR1:-1e-3}
PHASE2=${PHASE2:-1500}
RESUME=${RESUME:-}
arch=$1; shift
tags=("$@")
[ ${#tags[@]} -gt 0 ] || tags=(0067 0018)
train() {
    .venv/bin/trellic train --architecture "$arch" --N 64 --M 96 --crop 128 \
        --batch-size 8 --precision fp32 --threads 1 --log-every 100 "$@"
}
for tag in "${tags[@]}"; do
    lambda="0.${tag}"
    p1="$RUNS/$arch-l${tag}-p1"
    p2="$RUNS/$arch-l${tag}"
    if [ ! -f "$p1/model.safetensors" ]; then
        train --lambda "$lambda" --warm-start "weights/mbt-mean-n64-l${tag}.safetensors" \
            --train-params new --steps "$PHASE1" --lr "$LR1" --out "$p1" $RESUME
    fi
    if [ ! -f "$p2/model.safetensors" ]; then
        train --lambda "$lambda" --warm-start "$p1/model.safetensors" \
            --steps "$PHASE2" --lr 5e-5 --out "$p2" $RESUME
    fi
done
