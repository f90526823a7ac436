#!/usr/bin/env bash
# GPU check (issue 26, part 3): run from the repo root on a machine with a CUDA GPU.
#
#   TRELLIC_DATA=/path/to/data bash bench/gpu_check.sh        # under 10 minutes
#
# 1. a short `trellic train --device cuda` (N=128 M=192, batch 16 of 256x256 crops, 20 steps),
#    fp32 and --precision bf16: steps per second from each run's log (first 5 steps excluded);
# 2. a short `trellic retrain --device cuda` (online, decoder, 10 steps);
# 3. a Kodak image encoded with --device cuda and with --device cpu; each file decoded with
#    --device cpu and --device cuda.
#    Expected: the two files MAY differ (g_a ran on another device's float kernels, so y
#    and the search's decisions can differ), but every file decodes on the CPU and on the
#    GPU to the same indices (the symbols CRC in the file holds, the decode does not fail)
#    and pixels within one level (g_s's float kernels); decoding the same file twice on the
#    CPU is bit-exact. The CPU-encoded file is also compared byte for byte with itself
#    re-encoded (CPU encodes are deterministic).
# Prints one JSON line per check and a summary table; exits non-zero on any failure.
set -u -o pipefail

PY=${PYTHON:-.venv/bin/python}
DATA=${TRELLIC_DATA:-../shared/data}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trellic-gpu-check.XXXXXX")
FAILURES=0
declare -a ROWS=()

trellic() { "$PY" -m trellic "$@"; }

record() {  # name status detail-json
    echo "{\"check\": \"$1\", \"status\": \"$2\", \"detail\": $3}"
    ROWS+=("$(printf '%-28s %-5s %s' "$1" "$2" "$3")")
    [ "$2" = ok ] || FAILURES=$((FAILURES + 1))
}

steps_per_second() {  # log.jsonl -> steps/s between the first logged step and the last
    "$PY" - "$1" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"elapsed"' in line and '"loss"' in line]
first, last = rows[0], rows[-1]
print(f"{(last['step'] - first['step']) / (last['elapsed'] - first['elapsed']):.3f}")
PYEOF
}

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "gpu_check: CUDA is not available here" >&2; exit 2; }
"$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'

for precision in fp32 bf16; do
    out="$WORK/train-$precision"
    extra=()
    [ "$precision" = bf16 ] && extra=(--precision bf16 --channels-last)
    if timeout 240 "$PY" -m trellic train --device cuda --data "$DATA/train" --out "$out" \
        --N 128 --M 192 --batch-size 16 --crop 256 --steps 20 --log-every 5 \
        --checkpoint-every 1000 "${extra[@]}" > "$WORK/train-$precision.txt" 2>&1; then
        rate=$(steps_per_second "$out/log.jsonl")
        record "train cuda $precision" ok "{\"steps_per_second\": $rate}"
    else
        tail -5 "$WORK/train-$precision.txt" >&2
        record "train cuda $precision" FAIL "null"
    fi
done

model="$WORK/train-fp32/model.safetensors"
[ -f "$model" ] || model=default
if timeout 180 "$PY" -m trellic retrain --device cuda --model "$model" --data "$DATA/train" \
    --out "$WORK/retrain" --mode online --steps 10 --batch-size 8 --crop 256 \
    > "$WORK/retrain.txt" 2>&1; then
    rate=$(steps_per_second "$WORK/retrain/log.jsonl" 2>/dev/null || echo null)
    record "retrain cuda" ok "{\"steps_per_second\": $rate}"
else
    tail -5 "$WORK/retrain.txt" >&2
    record "retrain cuda" FAIL "null"
fi

image="$DATA/kodak/kodim01.png"
for q in usq tcq8; do
    ok=1
    trellic compress "$image" "$WORK/gpu-$q.trl" --device cuda --quantizer $q --force \
        > /dev/null || ok=0
    trellic compress "$image" "$WORK/cpu-$q.trl" --device cpu --quantizer $q --force \
        > /dev/null || ok=0
    trellic compress "$image" "$WORK/cpu2-$q.trl" --device cpu --quantizer $q --force \
        > /dev/null || ok=0
    for f in gpu cpu; do
        for d in cpu cuda; do
            trellic decompress "$WORK/$f-$q.trl" "$WORK/$f-$q-$d.png" --device $d --force \
                > /dev/null || ok=0
        done
    done
    if [ $ok = 1 ]; then
        detail=$("$PY" - "$WORK" "$q" <<'PYEOF'
import json, sys
import numpy as np
from PIL import Image
work, q = sys.argv[1], sys.argv[2]
read = lambda name: np.asarray(Image.open(f"{work}/{name}.png")).astype(int)
size = lambda name: len(open(f"{work}/{name}.trl", "rb").read())
same = lambda a, b: open(f"{work}/{a}.trl", "rb").read() == open(f"{work}/{b}.trl", "rb").read()
out = {
    "gpu_file_bytes": size(f"gpu-{q}"), "cpu_file_bytes": size(f"cpu-{q}"),
    "files_identical": same(f"gpu-{q}", f"cpu-{q}"),
    "cpu_encode_deterministic": same(f"cpu-{q}", f"cpu2-{q}"),
    "gpu_file_cpu_vs_cuda_decode_max_diff": int(np.abs(read(f"gpu-{q}-cpu") - read(f"gpu-{q}-cuda")).max()),
    "cpu_file_cpu_vs_cuda_decode_max_diff": int(np.abs(read(f"cpu-{q}-cpu") - read(f"cpu-{q}-cuda")).max()),
}
print(json.dumps(out))
good = (out["cpu_encode_deterministic"] and out["gpu_file_cpu_vs_cuda_decode_max_diff"] <= 1
        and out["cpu_file_cpu_vs_cuda_decode_max_diff"] <= 1)
sys.exit(0 if good else 1)
PYEOF
) && record "encode cuda/decode cpu $q" ok "$detail" \
          || record "encode cuda/decode cpu $q" FAIL "${detail:-null}"
    else
        record "encode cuda/decode cpu $q" FAIL "null"
    fi
done

echo
echo "check                        state detail"
printf '%s\n' "${ROWS[@]}"
echo "work folder: $WORK"
if [ "$FAILURES" -gt 0 ]; then
    echo "gpu_check: $FAILURES check(s) failed" >&2
    exit 1
fi
echo "gpu_check: all checks passed"
