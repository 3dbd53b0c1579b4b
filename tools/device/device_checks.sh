#!/usr/bin/env bash
# tools/device/device_checks.sh — issue 5's GPU checks as one prepared run.
#
#   bash tools/device/device_checks.sh build   # here (no GPU needed): the binaries, sm_90 SASS
#   bash tools/device/device_checks.sh run OUT # on the GPU machine: every check, logs into OUT
#
# `build` compiles the device tests, the device example and the device benchmark in Release
# (CUDA architectures 90-real;75-virtual, as CI) and stages them, with the CUDA runtime they
# link and the commit they were built from, in build/device-checks. The GPU machine has nvcc
# but neither doctest, Eigen nor Google Benchmark, so the binaries travel instead of the
# sources: carry build/device-checks (glibc and libstdc++ there are newer than here).
#
# `run` writes, into OUT:
#   device.txt            nvidia-smi, the date, the binaries' build commit
#   tests.log             test_device_compress (every randomized parity case, the error cases)
#                         and device_loop_example
#   sanitizer.log         compute-sanitizer memcheck, racecheck, initcheck and synccheck over a
#                         sample of the parity cases (KVCAP_DEVICE_TEST_SCALE) and the example
#   bench.log, bench.json bench_device_compress: compaction vs cudaMemcpy D2D, score / select /
#                         merge / compact vs a reference attention of the chunk, in one run
# Each step has its own time limit and the run goes on after a failure; the exit status is
# that of the first failed step. Commit OUT under docs/results/device/ with the device name.
set -uo pipefail
cd "$(dirname "$0")/../.."

staged=build/device-checks

case "${1:-}" in
  build)
    set -e
    cmake --preset release > /dev/null
    cmake --build --preset release -j2 --target test_device_compress device_loop_example
    cmake --preset bench > /dev/null
    cmake --build build/bench -j2 --target bench_device_compress
    rm -rf "$staged" && mkdir -p "$staged"
    cp build/release/tests/device/test_device_compress build/release/tests/device_loop_example \
      build/bench/bench/device/bench_device_compress "$staged/"
    cudart=$(ldd "$staged/test_device_compress" | awk '/libcudart/ {print $3}')
    [ -n "$cudart" ] && cp -L "$cudart" "$staged/"
    echo "$(git rev-parse HEAD)$(git diff --quiet HEAD -- include tests examples bench || echo ' (with local changes)')" \
      > "$staged/BUILD_COMMIT"
    ls -la "$staged"
    ;;
  run)
    out=${2:?usage: device_checks.sh run OUT}
    mkdir -p "$out"
    export LD_LIBRARY_PATH="$PWD/$staged${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    status=0
    step() {  # step LOG LIMIT_S COMMAND...: appends the command's output to LOG
      local log=$1 limit=$2
      shift 2
      echo "### $* (limit ${limit} s)" >> "$log"
      local start=$SECONDS
      timeout "$limit" "$@" >> "$log" 2>&1
      local rc=$?
      echo "### exit $rc after $((SECONDS - start)) s" >> "$log"
      if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
    }
    { date -u; nvidia-smi; echo "build commit: $(cat "$staged/BUILD_COMMIT" 2>/dev/null)"; } > "$out/device.txt" 2>&1
    step "$out/tests.log" 240 "$staged/test_device_compress"
    step "$out/tests.log" 60 "$staged/device_loop_example"
    for tool in memcheck racecheck initcheck synccheck; do
      step "$out/sanitizer.log" 120 env KVCAP_DEVICE_TEST_SCALE=0.02 \
        compute-sanitizer --tool "$tool" --error-exitcode 1 "$staged/test_device_compress"
      step "$out/sanitizer.log" 60 compute-sanitizer --tool "$tool" --error-exitcode 1 "$staged/device_loop_example"
    done
    step "$out/bench.log" 240 "$staged/bench_device_compress" --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
      --benchmark_out="$out/bench.json" --benchmark_out_format=json
    exit "$status"
    ;;
  *)
    echo "usage: $0 build | run OUT" >&2
    exit 2
    ;;
esac
