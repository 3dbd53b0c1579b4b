#!/usr/bin/env bash
# tools/device/sass_loads.sh — how many loads the device kernels that stage through shared
# memory have in flight per thread, read from the machine code (no GPU needed).
#
#   bash tools/device/sass_loads.sh [--check] [INCLUDE_DIR]   # default: this checkout's include/
#
# Compiles, for sm_90 with the library's device flags, the kernels below for half precision
# and NHD, prints each one's registers and spills (ptxas -v), and counts, in its SASS, the
# global loads a thread issues before the first shared-memory store that takes them: the loads
# it has in flight at once. A load followed at once by its store means one in flight, and a
# kernel that waits a round trip per element.
#
#   kernel         loads counted                      at least   what it stages
#   compact        16-byte (LD/LDG .E.128)             8         a tile's K and V rows
#   merge          16-byte                             8         a dropped token's and its candidates' keys
#   mean           2-byte elements (.U16)              32        slots of the mean unit key
#   window_stats   2-byte elements                     32        a key tile
#   window_mass    2-byte elements                     32        a key tile, then query rows
#
# With --check it fails (exit 1) when a kernel has fewer than its minimum, and exits 77 (a
# ctest skip) when the tools cannot be fetched: tests/device runs it so. cuobjdump (and the
# nvdisasm it runs) are not part of the CUDA packages here; they come from PyPI's
# nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels, unpacked into a scratch folder
# (nothing is installed). Point INCLUDE_DIR at another checkout's include/ (git worktree add
# /tmp/old <commit>) to compare commits; a kernel that checkout lacks prints "n/a".
set -euo pipefail
cd "$(dirname "$0")/../.."
check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
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

# name | pattern of the loads counted | minimum | the kernel's specialisation (its address is
# taken, which instantiates it whatever its parameters are)
kernels=(
  "compact|vector|8|compact_kernel<16, __half, L>"
  "merge|vector|8|reduce_rounds_kernel<__half, L, kvcap::scorers::key_norm, S, kvcap::reducers::merge>"
  "mean|element|32|mean_kernel<__half, L, kvcap::scorers::key_diff, S, kvcap::reducers::evict>"
  "window_stats|element|32|window_stats_kernel<__half, L>"
  "window_mass|element|32|window_mass_kernel<__half, L>"
)
failed=0
printf '%-13s %9s %7s %14s %8s\n' kernel registers spills "loads before" minimum
for entry in "${kernels[@]}"; do
  IFS='|' read -r name pattern minimum spec <<<"$entry"
  cat >"$work/$name.cu" <<EOF
#include <cuda_fp16.h>
#include <kvcap/device.cuh>
#include <kvcap/scorers.hpp>
#include <kvcap/reducers/merge.hpp>
using L = kvcap::layouts::nhd;
using S = kvcap::structures::sequence;
namespace kvcap::device::detail {
void* address_of_kernel() { return reinterpret_cast<void*>(&$spec); }
}
EOF
  if ! nvcc -std=c++20 -arch=sm_90 -O3 --fmad=false --expt-relaxed-constexpr -diag-suppress=554 -I "$include" \
    -Xptxas -v -c "$work/$name.cu" -o "$work/$name.o" >"$work/$name.ptxas" 2>&1; then
    printf '%-13s %9s %7s %14s %8s\n' "$name" n/a n/a n/a "$minimum"
    continue
  fi
  registers=$(grep -o 'Used [0-9]* registers' "$work/$name.ptxas" | head -n 1 | awk '{print $2}')
  spills=$(grep -o '[0-9]* bytes spill stores' "$work/$name.ptxas" | head -n 1 | awk '{print $1}')
  "$cuobjdump" -sass "$work/$name.o" >"$work/$name.sass"
  if [ "$pattern" = vector ]; then
    # 16-byte loads from the cache (generic LD.E.128 or global LDG.E.128) and the 16-byte
    # shared stores that take them.
    loads=$(awk '/(LD|LDG)\.E\.128/ { n++ } /STS\.128/ { print n + 0; exit }' "$work/$name.sass")
  else
    # 2-byte element loads, and the first shared store after one.
    loads=$(awk '/(LD|LDG)\.E\.U16/ { n++ } /STS/ && n > 0 { print n; exit }' "$work/$name.sass")
  fi
  loads=${loads:-0}
  printf '%-13s %9s %7s %14s %8s\n' "$name" "$registers" "${spills:-0}B" "$loads" "$minimum"
  if [ "$loads" -lt "$minimum" ]; then failed=1; fi
done
echo "(loads before: global loads a thread issues before the first shared store that takes them; nvcc $(nvcc --version | sed -n 's/.*\(V[0-9][0-9.]*\).*/\1/p' | tail -n 1), sm_90)"
if [ "$check" = 1 ] && [ "$failed" = 1 ]; then
  echo "sass_loads: a kernel has fewer loads in flight than its minimum"
  exit 1
fi
