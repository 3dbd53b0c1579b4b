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
# ctest skip) when cuobjdump and nvdisasm cannot be fetched (sass_common.sh): tests/device runs
# it so. Point INCLUDE_DIR at another checkout's include/ (git worktree add /tmp/old <commit>)
# to compare commits; a kernel that checkout lacks prints "n/a".
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

source tools/device/sass_common.sh
sass_fetch_tools "$work" sass_loads

# name | pattern of the loads counted | minimum | the kernel's specialisation
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
  if ! sass_compile "$work" "$name" "$include" "$spec"; then
    printf '%-13s %9s %7s %14s %8s\n' "$name" n/a n/a n/a "$minimum"
    continue
  fi
  registers=$(grep -o 'Used [0-9]* registers' "$work/$name.ptxas" | head -n 1 | awk '{print $2}')
  spills=$(grep -o '[0-9]* bytes spill stores' "$work/$name.ptxas" | head -n 1 | awk '{print $1}')
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
echo "(loads before: global loads a thread issues before the first shared store that takes them; nvcc $(sass_nvcc_version), sm_90)"
if [ "$check" = 1 ] && [ "$failed" = 1 ]; then
  echo "sass_loads: a kernel has fewer loads in flight than its minimum"
  exit 1
fi
