#!/usr/bin/env bash
# The GPU check, run on the GPU machine: every GPU test suite, a short training run, the
# benchmarks, each suite's log under $OUT (or /tmp), and a short table last.
# Usage: tools/gpu_check.sh [build_dir] [all|tests|bench]: tests runs the GPU suites and the
# short training runs, bench the benchmarks and the step profile (two calls where one command may
# run 10 minutes at most), all both. The build dir may be carried from a CUDA build made
# elsewhere (cmake --preset cuda); when it holds no flashtrain binary, the cuda preset is built.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-cuda}"
part="${2:-all}"
case $part in all | tests | bench) ;; *) echo "$0: part $part: expected all, tests or bench" >&2; exit 2 ;; esac
logs="${OUT:-/tmp}"
if [ ! -x "$build/flashtrain" ]; then
  cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build --preset cuda || exit 1
  build=build-cuda
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$build/flashtrain" info

table=()
failed=0
# Runs one step (a name, then the command), its output in $logs/<name>.log, and adds a table row:
# PASS, SKIP (exit code 77) or FAIL, the seconds, and doctest's totals or the log's last line.
run_step() {
  local name=$1
  shift
  local start rc seconds summary status
  start=$(date +%s.%N)
  "$@" >"$logs/$name.log" 2>&1
  rc=$?
  seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
  summary=$(grep -E "^\[doctest\] (test cases|assertions)" "$logs/$name.log" | sed 's/\[doctest\] //' | tr -s ' ' | paste -sd ';')
  [ -n "$summary" ] || summary=$(tail -1 "$logs/$name.log" | cut -c1-100)
  case $rc in
    0) status=PASS ;;
    77) status=SKIP ;;
    *) status="FAIL($rc)"; failed=1; tail -40 "$logs/$name.log" ;;
  esac
  table+=("$(printf '%-28s %-9s %7.2fs  %s' "$name" "$status" "$seconds" "$summary")")
}

if [ "$part" != bench ]; then
for suite in "$build"/tests/gpu_test_*; do
  run_step "$(basename "$suite")" "$suite"
done

# The trainer on the GPU: device auto must pick it. Needs $FLASHTRAIN_DATA with gpt2-tokenizer/
# and a WikiText file (TRAIN_SOURCE overrides data.source).
if [ -n "${FLASHTRAIN_DATA:-}" ]; then
  for precision in fp32 bf16; do
    run_step "train_auto_$precision" "$build/flashtrain" train recipes/tiny-cpu.yaml --set device=auto \
      --set precision=$precision --set run_dir="$logs/train_auto_$precision" --set optim.steps=50 \
      --set logging.val_every=25 --set logging.sample_every=50 --set checkpoint.every=0 \
      ${TRAIN_SOURCE:+--set data.source=$TRAIN_SOURCE}
    grep -q "on cuda:0" "$logs/train_auto_$precision.log" || { echo "train did not run on cuda:0"; failed=1; }
  done
fi
# The main GPU job (tools/train.sh's recipe), briefly: GPT-2 124M in bf16 at 8 x 1024 tokens.
if [ -n "${FLASHTRAIN_DATA:-}" ]; then
  run_step train_gpt2_124m "$build/flashtrain" train recipes/gpt2-124m-wikitext2.yaml \
    --set run_dir="$logs/train_gpt2_124m" --set optim.steps=60 --set optim.warmup_steps=10 \
    --set logging.val_every=30 --set logging.sample_every=60 --set checkpoint.every=0 \
    ${TRAIN_SOURCE:+--set data.source=$TRAIN_SOURCE}
fi
# DistilBERT's recipe, briefly (distilbert-base in bf16, masked LM in padded rows of 128): with
# each attention kernel from the same weights and batches (flashtrain compare: math, then flash),
# or, without gnuplot (which a comparison's plot needs), as it is (flash). Validation must report
# the masked-token accuracy.
if [ -n "${FLASHTRAIN_DATA:-}" ]; then
  bert_args=(--set optim.warmup_steps=10 --set logging.val_every=30 --set logging.val_batches=20
    --set checkpoint.every=0 ${TRAIN_SOURCE:+--set data.source=$TRAIN_SOURCE})
  if command -v gnuplot >/dev/null 2>&1; then
    run_step compare_distilbert "$build/flashtrain" compare recipes/distilbert-wikitext2.yaml \
      --vary attention=math,flash --steps 60 "${bert_args[@]}" --out "$logs/compare_distilbert"
    bert_metrics="$logs/compare_distilbert/attention=flash/metrics.jsonl"
  else
    run_step train_distilbert "$build/flashtrain" train recipes/distilbert-wikitext2.yaml --set optim.steps=60 \
      --set optim.epochs=0 "${bert_args[@]}" --set run_dir="$logs/train_distilbert"
    bert_metrics="$logs/train_distilbert/metrics.jsonl"
  fi
  grep -q val_masked_accuracy "$bert_metrics" || { echo "DistilBERT: no val_masked_accuracy in $bert_metrics"; failed=1; }
fi
fi
if [ "$part" != tests ]; then
# The benchmarks: whole training steps (fp32 with TF32, and bf16 with fp32 masters).
for precision in fp32 bf16; do
  run_step "bench_train_$precision" "$build/flashtrain" bench train --model gpt2-124m --seq 1024 --batch 16 \
    --precision $precision --device cuda
done
for attention in flash cudnn; do
  run_step "bench_train_bf16_$attention" "$build/flashtrain" bench train --model gpt2-124m --seq 1024 --batch 16 \
    --precision bf16 --device cuda --attention $attention
done
run_step bench_train_bf16_recompute "$build/flashtrain" bench train --model gpt2-124m --seq 1024 --batch 16 \
  --precision bf16 --device cuda --recompute-gelu
# Where a step's time goes, kernel by kernel (Nsight Compute), with our flash attention.
if command -v ncu >/dev/null 2>&1; then
  run_step step_profile_flash python3 tools/step_profile.py --flashtrain "$build/flashtrain" -- --model gpt2-124m \
    --seq 1024 --batch 16 --precision bf16 --device cuda --attention flash
fi
# Every kernel against its roofline, beside the unfused path it replaces.
for dtype in bf16 f32; do
  run_step "bench_kernels_$dtype" "$build/flashtrain" bench kernels --dtype $dtype
done
# Each attention kernel alone, T = 512 to 16K, head dims 64 and 128, causal and not.
run_step bench_attention_bf16 "$build/flashtrain" bench attention --dtype bf16
# Hugging Face parity, where transformers is installed.
if python3 -c "import transformers" 2>/dev/null; then
  run_step hf_gpt2_parity python3 tools/hf_gpt2_parity.py --flashtrain "$build/flashtrain"
fi

fi

echo
echo "== GPU check ($part): $(date -u +%Y-%m-%d) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
printf '%s\n' "${table[@]}"
exit $failed
