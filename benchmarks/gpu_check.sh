#!/usr/bin/env bash
# The paper's model on one GPU: LLaMA 3.2-1B in bf16 with RANDOM weights (model-init=random: a
# systems check, it says nothing about accuracy). Measures, in under 8 minutes on one H100:
#   1. step time and peak memory, full fine-tuning and k = 1, 4, 8 (benchmarks/step_time.py:
#      random token batches, no cache; one fresh process per variant),
#   2. the same with the activation cache off and on, on real synthetic notes
#      (benchmarks/activation_cache.py: epoch, step and evaluation time, cache size, CUDA peak),
#   3. one simulated federated round with 2 clients at k = 8 (benchmarks/fl_round.py:
#      wall time, peak host memory of the process tree, peak GPU memory, bytes exchanged).
# Results: $GPU_CHECK_OUT (default runs/gpu-check) — step_time.json, activation_cache.json,
# fl_round.json and the tables in report.md, to paste into BENCHMARKS.md §1.
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   # llama-tiny on CPU, seconds (a test)
#
# Every stage has its own time limit (150 s, 180 s, 150 s: 8 minutes in all; GPU_CHECK_STAGE_S
# sets one limit for all three), so a stuck stage cannot take the whole budget; the script exits
# non-zero if any stage failed and says which. Not yet run on a GPU: the limits are estimates
# (a 1 B random init, a few CUDA steps and one Ray start per stage).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${GPU_CHECK_OUT:-runs/gpu-check}
STAGE_S=${GPU_CHECK_STAGE_S:-}
if [[ "${GPU_CHECK_DRY_RUN:-0}" == "1" ]]; then
  MODEL=llama-tiny DEVICE=cpu LAYERS=1,2 FL_LAYERS=2 THREADS=2
  BATCH=4 SEQ=32 STEPS=2 EXAMPLES=16 DOCS=4 MAXLEN=32
else
  MODEL=llama-3.2-1b DEVICE=cuda LAYERS=1,4,8 FL_LAYERS=8 THREADS=4
  BATCH=8 SEQ=512 STEPS=10 EXAMPLES=256 DOCS=24 MAXLEN=128
  export FEDSKIP_PARALLEL_CLIENTS=1  # one 1 B model trains at a time on the one GPU
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
failed=()
began=$(date +%s)

stage() {  # stage NAME LIMIT_S COMMAND...: run within the limit, log to $OUT/NAME.log
  local name=$1 limit=${STAGE_S:-$2}
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit $limit s): $*" | tee "$OUT/$name.log"
  if timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1; then
    echo "== $name: ok in $(( $(date +%s) - t0 )) s"
  else
    echo "== $name: FAILED (rc $?) after $(( $(date +%s) - t0 )) s; see $OUT/$name.log"
    failed+=("$name")
  fi
}

stage step_time 150 python benchmarks/step_time.py --model "$MODEL" --random-weights \
  --device "$DEVICE" --dtype bf16 --batch-size "$BATCH" --seq-len "$SEQ" --steps "$STEPS" \
  --layers "$LAYERS" --repeat 1 --threads "$THREADS" --json "$OUT/step_time.json"

stage activation_cache 180 python benchmarks/activation_cache.py --model "$MODEL" \
  --model-init random --device "$DEVICE" --dtype bf16 --layers "$LAYERS" \
  --examples "$EXAMPLES" --synth-docs "$DOCS" --threads "$THREADS" \
  --json "$OUT/activation_cache.json"

rm -rf "$OUT/fl"
stage fl_round 150 python benchmarks/fl_round.py --out "$OUT/fl" --json "$OUT/fl_round.json" -- \
  "model=$MODEL" model-init=random dtype=bf16 "device=$DEVICE" "layers=$FL_LAYERS" \
  synth-sites=2 "synth-docs=$DOCS" "max-length=$MAXLEN" stride=16 local-epochs=1 \
  eval-clients=false

{
  echo "# gpu_check: $MODEL, bf16, random weights (NOT PRETRAINED), $DEVICE"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - began )) s in all"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  fi
  for name in step_time activation_cache; do
    echo
    echo "## $name"
    echo
    sed -n '/^`python/,$p' "$OUT/$name.log"
  done
  echo
  echo "## fl_round"
  echo
  echo '```json'
  cat "$OUT/fl_round.json" 2>/dev/null
  echo '```'
} >"$OUT/report.md"

echo "gpu_check: $(( $(date +%s) - began )) s; report in $OUT/report.md"
if (( ${#failed[@]} )); then
  echo "gpu_check: failed stages: ${failed[*]}"
  exit 1
fi
