#!/usr/bin/env bash
# The main training job: GPT-2 124M in bf16 on WikiText-2 when a GPU answers, else the tiny CPU
# recipe. Extra arguments go to `flashtrain train` (e.g. --set optim.steps=100, --resume).
# Usage: tools/train.sh [flashtrain train options]   (build first: tools/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if ./build/flashtrain info | grep -q "^cuda devices: *[1-9]"; then
  recipe=recipes/gpt2-124m-wikitext2.yaml
else
  recipe=recipes/tiny-cpu.yaml
fi
echo "flashtrain train $recipe $*"
exec ./build/flashtrain train "$recipe" "$@"
