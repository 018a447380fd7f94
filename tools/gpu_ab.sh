#!/usr/bin/env bash
# A/B timing of kernel-bench rows on the GPU machine: two flashtrain binaries (a base and a
# change), each row run twice per binary, interleaved, in one session, so clock and thermal
# drift hit both alike. Prints one line per run: the binary's label and the bench row.
# Usage: tools/gpu_ab.sh BASE_BINARY NEW_BINARY DTYPE "ROW NAME" ["ROW NAME" ...]
# e.g.   tools/gpu_ab.sh base/flashtrain build/flashtrain bf16 "layer_norm bwd" "embedding wte bwd"
set -uo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 BASE_BINARY NEW_BINARY DTYPE ROW [ROW ...]" >&2
  exit 2
fi
base=$1 new=$2 dtype=$3
shift 3
for binary in "$base" "$new"; do
  [ -x "$binary" ] || { echo "$0: $binary is not an executable" >&2; exit 2; }
done
for round in 1 2; do
  for label in base new; do
    binary=$base
    [ "$label" = new ] && binary=$new
    for row in "$@"; do
      line=$("$binary" bench kernels --dtype "$dtype" --only "$row" 2>&1 | grep -F "| $row |")
      echo "$label (round $round): ${line:-no row named '$row'}"
    done
  done
done
