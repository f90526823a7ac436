#!/usr/bin/env bash
# The channel-conditional zoo (ms2020-channel), warm-started from the shipped hyperprior
# rate points: phase 1 trains only the slice networks (zero-initialised corrections, so each
# run starts at its hyperprior), phase 2 fine-tunes everything. fp32: this CPU has no bfloat16
# units (bf16 autocast ran 8x slower here). Phase 1 at lr 1e-3: at 2e-4 the new networks had
# not moved the RD cost on held-out photos after 1,000 steps. Resumable: RESUME=--resume.
#   bash experiments/train_channel_zoo.sh [LAMBDA_TAG ...]     (default: 0018 0035 0067 013)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
PHASE1=${PHASE1:-1500}
LR1=${LR1:-1e-3}
PHASE2=${PHASE2:-2500}
RESUME=${RESUME:-}
train() {
    .venv/bin/trellic train --architecture ms2020-channel --N 64 --M 96 --crop 128 \
        --batch-size 8 --precision fp32 --threads 1 --log-every 100 "$@"
}
tags=("$@")
[ ${#tags[@]} -gt 0 ] || tags=(0018 0035 0067 013)
for tag in "${tags[@]}"; do
  (
    lambda="0.${tag}"
    p1="$RUNS/ch-l${tag}-p1"
    p2="$RUNS/ch-l${tag}"
    if [ ! -f "$p1/model.safetensors" ]; then
        train --lambda "$lambda" --warm-start "weights/mbt-mean-n64-l${tag}.safetensors" \
            --train-params new --steps "$PHASE1" --lr "$LR1" --out "$p1" $RESUME
    fi
    train --lambda "$lambda" --warm-start "$p1/model.safetensors" \
        --steps "$PHASE2" --lr 5e-5 --out "$p2" $RESUME
  ) > "$RUNS/ch-l${tag}.log" 2>&1 &
done
wait
