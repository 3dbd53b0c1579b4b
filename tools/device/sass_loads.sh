#!/usr/bin/env bash
# tools/device/sass_loads.sh — how many loads the compaction kernel has in flight per thread,
# read from the machine code (no GPU needed).
#
#   bash tools/device/sass_loads.sh [--require N] [INCLUDE_DIR]   # default: this checkout's include/
#
# Compiles compact_kernel<16, __half, nhd> for sm_90 with the library's device flags, prints
# its registers (ptxas -v), and counts the 16-byte global loads of the staging loop that are
# issued before its first 16-byte shared store: the loads one thread has in flight at once.
# cuobjdump (and the nvdisasm it runs) are not part of the CUDA packages here; they come from
# PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels, unpacked into a scratch folder
# (nothing is installed). Point INCLUDE_DIR at another
# checkout's include/ (git worktree add /tmp/old <commit>) to compare commits. With
# --require N it fails (exit 1) when fewer than N loads are in flight, and exits 77 (a ctest
# skip) when the wheels cannot be fetched: tests/device runs it so, with N = 8.
set -euo pipefail
cd "$(dirname "$0")/../.."
require=0
if [ "${1:-}" = --require ]; then
  require=$2
  shift 2
fi
include=$(realpath "${1:-include}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! pip download --quiet --no-deps -d "$work/wheel" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm; then
  echo "sass_loads: could not fetch cuobjdump and nvdisasm from PyPI: skipped"
  exit 77
fi
for wheel in "$work"/wheel/*.whl; do unzip -q -o "$wheel" -d "$work/tools"; done
cuobjdump=$(find "$work/tools" -type f -name cuobjdump | head -n 1)
chmod +x "$cuobjdump" "$(dirname "$cuobjdump")/nvdisasm"
export PATH="$(dirname "$cuobjdump"):$PATH"

cat > "$work/compact.cu" <<'EOF'
#include <cuda_fp16.h>
#include <kvcap/device.cuh>
namespace d = kvcap::device;
template __global__ void d::detail::compact_kernel<16, __half, kvcap::layouts::nhd>(
    d::workspace_layout<__half, kvcap::layouts::nhd>, kvcap::index_t, kvcap::index_t, d::detail::no_compact_probe);
EOF
# A checkout from before the probe parameter has a three-parameter kernel.
grep -q "class Probe" "$include/kvcap/device/compact.cuh" ||
  sed -i 's/, d::detail::no_compact_probe);/);/' "$work/compact.cu"

nvcc -std=c++20 -arch=sm_90 -O3 --fmad=false --expt-relaxed-constexpr -diag-suppress=554 -I "$include" \
  -Xptxas -v -c "$work/compact.cu" -o "$work/compact.o" 2>&1 | grep -E "registers|spill" | sed 's/^ *//'
"$cuobjdump" -sass "$work/compact.o" > "$work/compact.sass"
# The staging loop: 16-byte loads from the cache (generic LD.E.128 or global LDG.E.128) and
# the shared stores that take them; count the loads before the first store.
loads=$(awk '/(LD|LDG)\.E\.128/ { n++ } /STS\.128/ { print n + 0; exit }' "$work/compact.sass")
echo "$loads global 16-byte loads issued before the first 16-byte shared store"
if [ "$loads" -lt "$require" ]; then
  echo "sass_loads: fewer than the $require required"
  exit 1
fi
