#!/usr/bin/env bash
# Installs the Debian packages flashtrain builds and tests with. Idempotent: packages already
# present are left alone. The CUDA toolkit (nvcc, cuBLAS, cuDNN, NCCL) is not a Debian package
# here: when nvcc is on the PATH the build uses it, otherwise flashtrain builds for the CPU only.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libyaml-cpp-dev      # recipes
  libhdf5-dev          # checkpoints and tokenised datasets
  doctest-dev          # unit tests
  libcli11-dev         # the command line
  libpcre2-dev         # the tokenizers' Unicode-aware pre-tokenisation
  nlohmann-json3-dev   # encoder.json, JSONL corpora, safetensors headers
  libssl-dev           # SHA-256 of data sources
  libopenblas-openmp-dev  # the CPU backend's matrix products
  gnuplot-nox          # loss plots (loss.png of runs, flashtrain plot and compare)
  libpng-dev           # the plot tests read those PNGs back
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install_deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
