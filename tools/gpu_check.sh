#!/usr/bin/env bash
# The GPU check, run on the GPU machine: every GPU test suite (and, as they arrive, the
# benchmarks), each suite's log under $OUT (or /tmp), and a short table last.
# Usage: tools/gpu_check.sh [build_dir]. The build dir may be carried from a CUDA build made
# elsewhere (cmake --preset cuda); when it holds no flashtrain binary, the cuda preset is built.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-cuda}"
logs="${OUT:-/tmp}"
if [ ! -x "$build/flashtrain" ]; then
  cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build --preset cuda || exit 1
  build=build-cuda
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$build/flashtrain" info

table=()
failed=0
for suite in "$build"/tests/gpu_test_*; do
  name=$(basename "$suite")
  start=$(date +%s.%N)
  "$suite" >"$logs/$name.log" 2>&1
  rc=$?
  seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
  summary=$(grep -E "^\[doctest\] (test cases|assertions)" "$logs/$name.log" | sed 's/\[doctest\] //' | tr -s ' ' | paste -sd ';')
  case $rc in
    0) status=PASS ;;
    77) status=SKIP ;;
    *) status="FAIL($rc)"; failed=1; tail -40 "$logs/$name.log" ;;
  esac
  table+=("$(printf '%-28s %-9s %6.2fs  %s' "$name" "$status" "$seconds" "$summary")")
done

echo
echo "== GPU check: $(date -u +%Y-%m-%d) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
printf '%s\n' "${table[@]}"
exit $failed
