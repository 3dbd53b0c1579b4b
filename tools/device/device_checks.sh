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
# sources: carry build/device-checks. The libraries the binaries link that the GPU machine's
# image may lack travel with them: the CUDA runtime and Google Benchmark in the folder itself,
# and this machine's libstdc++ and libgcc in fallback/, used only when the loader there says
# the binaries need newer ones than it has.
#
# `run` writes, into OUT:
#   device.txt            nvidia-smi, the date, the binaries' build commit
#   tests.log             test_device_compress (every randomized parity case, the error cases)
#                         and device_loop_example
#   sanitizer.log         compute-sanitizer memcheck, racecheck, initcheck and synccheck over a
#                         sample of the parity cases (KVCAP_DEVICE_TEST_SCALE) and the example
#                         (the example but under racecheck, which outlasts its 30 s)
#   bench.log, bench.json bench_device_compress: compaction vs cudaMemcpy D2D, score / select /
#                         merge / compact vs a reference attention of the chunk, in one run
#                         (with the compaction's per-tile timeline, tl_* counters)
#   profile.log           Nsight Compute on one compaction launch, where the machine has ncu
#   soak.log              test_device_compress at KVCAP_TEST_SEED=1 to 3, as time allows (optional:
#                         a seed left out for time does not fail the run; a failing one does)
# The steps run in that order of importance (tests, example, benchmark, sanitizers, profile, soak), each with
# its own time limit, all within BUDGET_S seconds (default 420) so the call ends well inside
# the device tool's limit; a step with no time left is logged as skipped and fails the run. The
# run goes on after a failure; the exit status is that of the first failed step. Commit OUT
# under docs/results/device/ with the device name.
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
    rm -rf "$staged" && mkdir -p "$staged/fallback"
    cp build/release/tests/device/test_device_compress build/release/tests/device_loop_example \
      build/bench/bench/device/bench_device_compress "$staged/"
    for lib in libcudart libbenchmark; do  # not part of the GPU machine's base image
      path=$(ldd "$staged"/*_* | awk -v lib="$lib" '$1 ~ "^" lib {print $3; exit}')
      [ -n "$path" ] && cp -L "$path" "$staged/"
    done
    for lib in libstdc++.so.6 libgcc_s.so.1; do
      cp -L "$(ldd "$staged/test_device_compress" | awk -v lib="$lib" '$1 == lib {print $3}')" "$staged/fallback/"
    done
    echo "$(git rev-parse HEAD)$(git diff --quiet HEAD -- include tests examples bench || echo ' (with local changes)')" \
      > "$staged/BUILD_COMMIT"
    ls -la "$staged" "$staged/fallback"
    ;;
  run)
    out=${2:?usage: device_checks.sh run OUT [BUDGET_S]}
    budget=${3:-420}
    mkdir -p "$out"
    export LD_LIBRARY_PATH="$PWD/$staged${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PATH="$PATH:/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer"
    {
      date -u
      echo "build commit: $(cat "$staged/BUILD_COMMIT" 2>/dev/null)"
      uname -a
      nvidia-smi
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
      compute-sanitizer --version
      if ldd "$staged"/*_* | grep -q 'not found'; then
        echo "the loader lacks libraries or versions the binaries need; using $staged/fallback:"
        ldd "$staged"/*_* | grep 'not found'
      fi
      ldd "$staged/bench_device_compress"
    } > "$out/device.txt" 2>&1
    if grep -q "using $staged/fallback" "$out/device.txt"; then
      export LD_LIBRARY_PATH="$PWD/$staged/fallback:$LD_LIBRARY_PATH"
    fi
    status=0
    step() {  # step LOG LIMIT_S COMMAND...: appends the command's output to LOG
      local log=$1 limit=$2
      shift 2
      local left=$((budget - SECONDS - 5))
      if [ "$left" -lt 10 ]; then
        echo "### $* skipped: out of time (${SECONDS} s of ${budget} s used)" >> "$log"
        [ "$status" -eq 0 ] && status=124
        return
      fi
      [ "$limit" -gt "$left" ] && limit=$left
      echo "### $* (limit ${limit} s)" >> "$log"
      local start=$SECONDS
      timeout "$limit" "$@" >> "$log" 2>&1
      local rc=$?
      echo "### exit $rc after $((SECONDS - start)) s" >> "$log"
      if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
    }
    step "$out/tests.log" 150 "$staged/test_device_compress" --duration=true
    step "$out/tests.log" 30 "$staged/device_loop_example"
    step "$out/bench.log" 120 "$staged/bench_device_compress" --benchmark_min_time=0.1 --benchmark_repetitions=3 \
      --benchmark_counters_tabular=true --benchmark_out="$out/bench.json" --benchmark_out_format=json
    for tool in memcheck racecheck initcheck synccheck; do
      step "$out/sanitizer.log" 60 env KVCAP_DEVICE_TEST_SCALE=0.02 \
        compute-sanitizer --tool "$tool" --error-exitcode 1 "$staged/test_device_compress"
      # The example under racecheck outlasts 30 s (the test sample runs every kernel already).
      [ "$tool" = racecheck ] && continue
      step "$out/sanitizer.log" 30 compute-sanitizer --tool "$tool" --error-exitcode 1 "$staged/device_loop_example"
    done
    # Nsight Compute on one compaction launch, where the GPU machine has it: the memory
    # throughput, occupancy and warp stalls behind the compaction's fraction of memcpy.
    ncu_bin=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
    if [ -n "$ncu_bin" ]; then
      step "$out/profile.log" 90 "$ncu_bin" -k regex:compact_kernel --launch-skip 2 -c 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats \
        "$staged/bench_device_compress" --benchmark_filter='compact_nhd/oldest/0/4$' --benchmark_min_time=0.01
    else
      echo "### no ncu on this machine: no profile" >> "$out/profile.log"
    fi
    # The device tests again on cases CI never draws (KVCAP_TEST_SEED: tests/test_seed.hpp,
    # docs/results/soak.md), the kernels on the hardware, with the time that is left. Optional:
    # a seed left out for time is written down, and does not change the exit status.
    for n in 1 2 3; do
      if [ $((budget - SECONDS)) -lt 60 ]; then
        echo "### soak KVCAP_TEST_SEED=$n not run: ${SECONDS} s of ${budget} s used" >> "$out/soak.log"
        continue
      fi
      step "$out/soak.log" 45 env KVCAP_TEST_SEED=$n "$staged/test_device_compress"
    done
    for log in "$out"/*.log; do  # what comes back is at most 16 MiB a file
      [ "$(stat -c %s "$log")" -gt 15000000 ] && truncate -s 15000000 "$log" && echo "### (truncated)" >> "$log"
    done
    echo "device checks: exit $status after $SECONDS s"
    exit "$status"
    ;;
  *)
    echo "usage: $0 build | run OUT [BUDGET_S]" >&2
    exit 2
    ;;
esac
