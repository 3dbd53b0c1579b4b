#!/usr/bin/env bash
# tools/device/merge_rounds_trace.sh — how the device merge's rounds (reduce_rounds.cuh) go on
# the parity tests' merge cases, run on the CPU SIMT emulator (tests/device/simt).
#
#   bash tools/device/merge_rounds_trace.sh [SCALE]   # SCALE: KVCAP_DEVICE_TEST_SCALE, 0.25 default
#
# Adds two prints to a scratch copy of reduce_rounds.cuh (each round's ready turns, and the
# turns left to the slot-order walk), builds the parity tests for the emulator, runs the
# "device merges what the host merges" cases for NHD and paged NHD, and sums up per segment:
# how many rounds ran, how many turns each readied, how many the walk took. The library is
# not changed; the counts are the emulator's, and a GPU runs the same schedule (it depends
# only on the kept set and the structure, not on timing).
#
# Needs what tools/device/simt_mutations.sh needs (g++, the CUDA Toolkit's headers, Eigen,
# doctest). About 3 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scale=${1:-0.25}
cuda=${CUDA_HOME:-/usr/local/cuda}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -w -isystem "$cuda/include" -isystem "$cuda/include/cccl" -isystem /usr/include/eigen3)

mkdir -p "$work/src" && cp -r "$root/include" "$root/tests" "$work/src/"
python3 - "$work/src/include/kvcap/device/reduce_rounds.cuh" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
edits = [
    ("#include <bit>\n", "#include <bit>\n#include <cstdio>\n"),
    ("    const int count = ready_count < rounds_ready_capacity ? ready_count : rounds_ready_capacity;\n",
     "    const int count = ready_count < rounds_ready_capacity ? ready_count : rounds_ready_capacity;\n"
     "    if (threadIdx.x == 0) std::fprintf(stderr, \"TRACE round %d %d\\n\", (int)total, (int)ready_count);\n"),
    ("  if (warp_index != 0) return;\n",
     "  if (threadIdx.x == 0) {\n"
     "    int left = 0;\n"
     "    for (index_t i = 0; i < total; ++i) left += dropped[i].done == 0;\n"
     "    std::fprintf(stderr, \"TRACE walk %d %d\\n\", (int)total, left);\n"
     "  }\n"
     "  if (warp_index != 0) return;\n"),
]
for old, new in edits:
    if old not in text:
        sys.exit(f"trace point not found in {path}: {old!r}")
    text = text.replace(old, new, 1)
open(path, "w").write(text)
PY
inc=(-I"$work/src/tests/device/simt/include" -I"$work/src/include")
g++ "${flags[@]}" "${inc[@]}" -c "$work/src/tests/device/simt/test_main_on_cpu.cpp" -o "$work/main.o"
g++ "${flags[@]}" -I"$work/src/include" -c "$work/src/tests/device/simt/runtime.cpp" -o "$work/runtime.o"
g++ "${flags[@]}" "${inc[@]}" -c "$work/src/tests/device/simt/test_parity_on_cpu.cpp" -o "$work/parity.o"
g++ -o "$work/t" "$work/parity.o" "$work/main.o" "$work/runtime.o"
KVCAP_DEVICE_TEST_SCALE=$scale "$work/t" -tc='device merges what the host merges<*nhd>*' >"$work/out.log" 2>"$work/trace.log"

echo "kvcap device merge rounds on the SIMT emulator: scale $scale, $(g++ --version | head -1), $(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- include tests || echo " (with local changes)")"
grep '^\[doctest\] test cases' "$work/out.log" | sed 's/^\[doctest\] //'
python3 - "$work/trace.log" <<'PY'
import sys, collections
segments = []  # (dropped tokens, [ready per round], turns left to the walk)
rounds = []
for line in open(sys.argv[1]):
    f = line.split()
    if f[:2] == ["TRACE", "round"]:
        rounds.append(int(f[3]))
    elif f[:2] == ["TRACE", "walk"]:
        segments.append((int(f[2]), rounds, int(f[3])))
        rounds = []
shared = [s for s in segments if len(s[1]) > 1]  # a round readied at least rounds_min_ready turns
print(f"segments merged: {len(segments)}; dropped tokens: {sum(s[0] for s in segments)}")
print(f"segments whose first round readied fewer than 4 turns (half the block's warps; the walk takes them all): "
      f"{sum(1 for s in segments if len(s[1]) <= 1)}")
print(f"segments whose turns were shared out over at least one round: {len(shared)}")
hist = collections.Counter(len(s[1]) - 1 for s in shared)
print("  rounds shared out -> segments: " + ", ".join(f"{k}: {hist[k]}" for k in sorted(hist)))
over = sum(1 for s in segments for r in s[1] if r > 1024)
print(f"rounds that readied more turns than a round holds (1024): {over}")
print("largest segments (dropped tokens: turns readied per round ... | left to the walk):")
for total, r, left in sorted(segments, key=lambda s: -s[0])[:6]:
    print(f"  {total:5d}: {' '.join(map(str, r))} | {left}")
print(f"over the shared-out segments, {sum(s[0] for s in shared)} turns took {sum(len(s[1]) for s in shared)} rounds "
      f"and {sum(s[2] for s in shared)} walked turns")
PY
