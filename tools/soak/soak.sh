#!/usr/bin/env bash
# tools/soak/soak.sh — the randomized tests again, on cases they have never drawn.
#
#   bash tools/soak/soak.sh [FIRST [LAST [BUILD_DIR]]]     # defaults: 1 4 build/release
#
# For each N in FIRST..LAST, runs every randomized agreement test of a built tree with
# KVCAP_TEST_SEED=N (tests/test_seed.hpp: each test's seeds move, so it draws new shapes,
# budgets, values and ties under the same checks) and, for the SIMT emulator, KVCAP_SIMT_SEED=N
# too (other block orders and residencies). CI runs N = 0, the committed seeds; this does not
# replace it. Prints the machine, one line per (N, test) with doctest's own counts, and exits
# non-zero if any run failed; a failing run's whole output is kept under $SOAK_LOGS
# (default /tmp/kvcap-soak) to reproduce it with the same N.
set -uo pipefail
cd "$(dirname "$0")/../.."
first=${1:-1}
last=${2:-4}
build=${3:-build/release}
logs=${SOAK_LOGS:-/tmp/kvcap-soak}
mkdir -p "$logs"

# SOAK_TESTS (space-separated, paths under BUILD_DIR/tests) picks some of them: the emulator
# takes about 5 minutes an N on 2 cores, the others a few seconds together.
all="test_compressor_reference test_merge_and_budgets test_layouts test_head_adaptive test_metadata
     test_window_scorer test_structures test_device_reference test_device_shared_heads device/simt/test_device_on_cpu"
# shellcheck disable=SC2206  # split on white space: the names hold none
tests=(${SOAK_TESTS:-$all})

echo "kvcap soak at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "build: $build ($(grep -m1 CMAKE_CXX_COMPILER: "$build/CMakeCache.txt" | cut -d= -f2), $(grep -m1 CMAKE_BUILD_TYPE: "$build/CMakeCache.txt" | cut -d= -f2))"
failed=0
for ((n = first; n <= last; n++)); do
  for t in "${tests[@]}"; do
    exe="$build/tests/$t"
    if [ ! -x "$exe" ]; then
      echo "N=$n $t: not built"
      failed=1
      continue
    fi
    log="$logs/N${n}_$(basename "$t").log"
    start=$(date +%s)
    KVCAP_TEST_SEED=$n KVCAP_SIMT_SEED=$n "$exe" > "$log" 2>&1
    rc=$?
    counts=$(grep -E '^\[doctest\] (test cases|assertions):' "$log" | sed 's/\[doctest\] //; s/ *| */, /g; s/, *$//; s/  */ /g' | paste -sd';' -)
    # A test that never read KVCAP_TEST_SEED drew its committed cases again: not a soak.
    if [ $rc -eq 0 ] && [ "$n" -ne 0 ] && ! grep -q "^KVCAP_TEST_SEED=$n: randomized cases drawn from shifted seeds" "$log"; then
      echo "N=$n $t: the test did not take KVCAP_TEST_SEED (tests/test_seed.hpp)"
      rc=1
    fi
    echo "N=$n $t: rc $rc, $(( $(date +%s) - start )) s; $counts"
    if [ $rc -ne 0 ]; then
      failed=1
    else
      rm -f "$log"
    fi
  done
done
[ $failed -eq 0 ] && echo "soak: every run passed" || echo "soak: FAILED (logs in $logs)"
exit $failed
