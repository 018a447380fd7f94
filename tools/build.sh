#!/usr/bin/env bash
# Installs the Debian packages, configures and builds one CMake preset (default: "default",
# which builds the CUDA backend when nvcc is found). Usage: tools/build.sh [preset]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"

# nvcc usually lives outside the default PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

./tools/install_deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
