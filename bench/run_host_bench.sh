#!/usr/bin/env bash
# bench/run_host_bench.sh — build bench_host_compress (Release, portable flags, -j2) and run
# it, writing everything it prints to a file. This is how docs/results/host_bench.md's
# figures are produced.
#
# usage: bench/run_host_bench.sh [OUTPUT_FILE] [extra benchmark flags...]
#   OUTPUT_FILE   default: <build dir>/host_bench_<UTC date-time>.txt
#   extra flags   passed to the binary, e.g. --benchmark_filter=hnd --step_iterations=5
# environment:
#   KVCAP_REV=<commit>  measure the library of that commit (its tree is exported with
#                       `git archive`; bench/ comes from the working tree), so a run is not
#                       disturbed by uncommitted header edits. Default: the working tree.
#   BUILD_DIR           default: build/bench-host (under the source tree used)
#   JOBS                parallel build jobs, default 2 (shared 2-core machines)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo
if [[ -n "${KVCAP_REV:-}" ]]; then
  src=$repo/build/bench-src-$(git -C "$repo" rev-parse --short "$KVCAP_REV")
  rm -rf "$src" && mkdir -p "$src"
  git -C "$repo" archive "$KVCAP_REV" | tar -x -C "$src"
  rm -rf "$src/bench" && cp -r "$repo/bench" "$src/bench"
fi
cmdline="$0 $*"
build=${BUILD_DIR:-$src/build/bench-host}
out=${1:-$build/host_bench_$(date -u +%Y%m%dT%H%M%SZ).txt}
[[ $# -gt 0 ]] && shift

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVCAP_BUILD_BENCH=ON -DKVCAP_BUILD_TESTS=OFF \
  -DKVCAP_BUILD_EXAMPLES=OFF -DKVCAP_ENABLE_CUDA=OFF -DKVCAP_INSTALL=OFF >/dev/null
cmake --build "$build" --target bench_host_compress -j"${JOBS:-2}"

mkdir -p "$(dirname "$out")"
{
  echo "# command: ${KVCAP_REV:+KVCAP_REV=$KVCAP_REV }$cmdline"
  if [[ -n "${KVCAP_REV:-}" ]]; then
    echo "# library: commit $(git -C "$repo" rev-parse "$KVCAP_REV") (exported), bench/ from the working tree"
  else
    echo "# library: working tree at $(git -C "$repo" rev-parse HEAD)$(git -C "$repo" diff --quiet HEAD -- include || echo ', include/ has uncommitted changes')"
  fi
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "# load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out"
"$build/bench/bench_host_compress" "$@" 2>&1 | tee -a "$out"
echo "# load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
echo "written: $out" >&2
