#!/usr/bin/env bash
# Builds a preset (tools/build.sh) and runs its test suites with ctest. GPU suites report
# "skipped" on machines without a GPU. Usage: tools/test.sh [preset]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
./tools/build.sh "$preset"
export FLASHTRAIN_DATA="${FLASHTRAIN_DATA:-$(cd .. && pwd)/shared/data}"
ctest --preset "$preset" -j "$(nproc)"
