#!/usr/bin/env bash
# tools/device/sass_ordering.sh — the memory order of the compaction's flags between tiles,
# read from its machine code (no GPU needed).
#
#   bash tools/device/sass_ordering.sh [--check] [INCLUDE_DIR]   # default: this checkout's include/
#   bash tools/device/sass_ordering.sh --mutations               # does the check catch bad orders?
#
# The in-place compaction (include/kvcap/device/compact.cuh) is the one kernel whose blocks
# wait on each other: a tile publishes "read" once its moving rows are staged, and a later tile
# writes over them only after it has seen that flag. The CPU emulator runs one thread at a time,
# so a flag stored or polled without ordering passes there; on a GPU the writes could overtake
# the reads they must follow. This compiles compact_kernel for sm_90 with the library's device
# flags (four specialisations, below), and walks the SASS of each in text order:
#
#   release  the flag store (the first 32-bit strong global store, ST.E.STRONG.GPU) comes
#            after a barrier (BAR.SYNC) that follows every staging load of K, V and metadata
#            (__ldcg: LDG.E[.width].STRONG.GPU), with a GPU-scope fence (MEMBAR.SC.GPU or
#            MEMBAR.ALL.GPU) between that barrier and the store;
#   acquire  between the flag store and the first global store of the writes, the polls are
#            strong 32-bit loads (LD.E.STRONG.GPU: a weak load may be served from L1 or hoisted
#            out of the loop), each followed by an acquire (CCTL.IVALL, which nvcc emits for
#            ld.acquire.gpu, or a MEMBAR) before any barrier, and a barrier lies between the
#            last poll and the writes.
#
# These are what nvcc 13 emits for cuda::atomic_ref's release store and acquire load, or for a
# __threadfence() next to relaxed ones; the check accepts either. --mutations applies each bad
# (and each equivalent) order to a scratch copy of include/ and prints the check's verdict
# (caught: in every specialisation) against the expected one; it exits 1 if any differs.
#
# With --check it fails (exit 1) when a rule is broken, and exits 77 (a ctest skip) when
# cuobjdump and nvdisasm cannot be fetched (sass_common.sh): tests/device runs it so.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
mode=report
case "${1:-}" in
  --check) mode=check; shift ;;
  --mutations) mode=mutations; shift ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source tools/device/sass_common.sh
sass_fetch_tools "$work" sass_ordering

# Prints what it found and "ordering: ok" or the broken rules, one a line; exit 1 when broken.
read_order() {
  awk '
    function op(  i) { for (i = 1; i <= NF; ++i) if ($i !~ /^(\/\*|@)/) return $i }
    /Function : / { inside = ($0 ~ /compact_kernel/); next }
    !inside { next }
    # This line: a GPU-scope fence; an acquire (a fence, or the L1 invalidation of ld.acquire).
    { fence = $0 ~ /MEMBAR\.(SC|ALL)\.(GPU|SYS)/; acquire = fence || $0 ~ /CCTL\.IVALL/ }
    acquire { ++kinds[op()] }
    /BAR\.SYNC/ {
      ++bars
      if (state == 0) { fenced = 0; loaded = 0 }
      if (state == 1) { if (pending) bad["a poll reaches a barrier with no acquire after it"] = 1; barrier_after_poll = 1 }
      next
    }
    state == 0 && fence { fenced = 1; fence_name = op() }
    state == 0 && /[ \t]LDG\.E(\.[0-9A-Z]+)?\.STRONG\.GPU/ { loaded = 1 }
    state == 0 && /[ \t]STG?\.E\.STRONG\.(GPU|SYS) / {
      state = 1
      printf "flag store   %s, after %d barriers: %s\n", op(), bars, fenced ? "fence " fence_name " before it" : "no GPU-scope fence since the last barrier"
      if (!fenced) bad["the flag store is not a release: no GPU-scope fence between the barrier and it"] = 1
      if (loaded) bad["the flag is published before the barrier that ends the staging loads"] = 1
      next
    }
    state == 1 && /[ \t]LDG?\.E\.STRONG\.(GPU|SYS) / { ++polls; pending = 1; barrier_after_poll = 0; next }
    state == 1 && acquire { if (pending) ++acquires; pending = 0 }
    state == 1 && /[ \t]STG?\.E[. ]/ {
      state = 2
      if (pending) bad["a poll reaches the writes with no acquire after it"] = 1
      if (polls > 0 && !barrier_after_poll) bad["no barrier between the polls and the writes"] = 1
    }
    END {
      if (state == 0) bad["no 32-bit strong global store: the flag is not published at GPU scope"] = 1
      if (state >= 1 && polls == 0) bad["no strong 32-bit load polls the flags: a weak load may be hoisted or served by L1"] = 1
      if (state == 1) bad["no global store after the flag store: the writes were not found"] = 1
      printf "polls        %d strong 32-bit loads; acquires after them: %d\n", polls, acquires
      line = ""
      for (k in kinds) line = line sprintf(" %s ×%d", k, kinds[k])
      print "fences      " line
      n = 0
      for (b in bad) { print "broken:      " b; ++n }
      if (n == 0) print "ordering:    ok"
      exit n > 0
    }
  ' "$1"
}

# The specialisations read: every vector width the compaction is launched with (16, 8 and 4
# bytes, by the rows' alignment), both precisions, and each layout family.
specs=(
  "compact_kernel<16, __half, kvcap::layouts::nhd>"
  "compact_kernel<16, float, kvcap::layouts::hnd>"
  "compact_kernel<8, __half, kvcap::layouts::paged_nhd>"
  "compact_kernel<4, float, kvcap::layouts::varlen>"
)

# INCLUDE_DIR: compiles and reads each specialisation, printing what it found; returns 0 when
# every one is ordered, 1 when one is not, 2 when one does not compile.
check_include() {
  local spec worst=0
  for spec in "${specs[@]}"; do
    echo "$spec"
    if ! sass_compile "$work" compact "$1" "$spec"; then
      tail -n 20 "$work/compact.ptxas"
      return 2
    fi
    read_order "$work/compact.sass" | sed 's/^/  /'
    if [ "${PIPESTATUS[0]}" != 0 ]; then worst=1; fi
  done
  return $worst
}

if [ "$mode" != mutations ]; then
  include=$(realpath "${1:-include}")
  echo "compact_kernel, nvcc $(sass_nvcc_version), sm_90, $include"
  if check_include "$include"; then exit 0; fi
  if [ "$mode" = check ]; then echo "sass_ordering: the compaction's flags are not ordered"; exit 1; fi
  exit 0
fi

# expected verdict | name | text to replace in compact.cuh (first occurrence) | replacement
mutations=(
  "accepted|none (the library's source)||"
  "caught|the flag stored relaxed|flag(ws.tile_done[g]).store(1, cuda::memory_order_release);|flag(ws.tile_done[g]).store(1, cuda::memory_order_relaxed);"
  "caught|the polls relaxed|flag(ws.tile_done[other]).load(cuda::memory_order_acquire)|flag(ws.tile_done[other]).load(cuda::memory_order_relaxed)"
  "caught|the polls plain loads|flag(ws.tile_done[other]).load(cuda::memory_order_acquire)|ws.tile_done[other]"
  "caught|'read' published before the barrier that ends the staging|  __syncthreads();
  if (t == 0) {
    flag(ws.tile_done[g]).store(1, cuda::memory_order_release);|  if (t == 0) flag(ws.tile_done[g]).store(1, cuda::memory_order_release);
  __syncthreads();
  if (t == 0) {"
  "caught|no barrier between the polls and the writes|  }
  __syncthreads();
  if (t == 0) probe(g, compact_phase::released);|  }
  if (t == 0) probe(g, compact_phase::released);"
  "accepted|a fence, then the flag stored relaxed|flag(ws.tile_done[g]).store(1, cuda::memory_order_release);|__threadfence(), flag(ws.tile_done[g]).store(1, cuda::memory_order_relaxed);"
  "accepted|the polls relaxed, then a fence|      while (flag(ws.tile_done[other]).load(cuda::memory_order_acquire) == 0) __nanosleep(100);|      while (flag(ws.tile_done[other]).load(cuda::memory_order_relaxed) == 0) __nanosleep(100);
    __threadfence();"
)
echo "kvcap sass_ordering mutations: nvcc $(sass_nvcc_version), sm_90, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include || echo " (with local changes)")"
failed=0
printf '%-9s %-9s %s\n' expected verdict mutation
for m in "${mutations[@]}"; do
  IFS='|' read -r -d '' expected name old new < <(printf '%s\0' "$m") || true
  rm -rf "$work/src" && cp -r "$root/include" "$work/src"
  python3 tools/mutations/apply_mutation.py "$work/src/kvcap/device/compact.cuh" "$old" "$new"
  rc=0
  check_include "$work/src" >"$work/mutant.log" 2>&1 || rc=$?
  # caught: every specialisation broken; accepted: none; otherwise how many were.
  ok=$(grep -c 'ordering:    ok' "$work/mutant.log" || true)
  if [ "$rc" = 2 ]; then verdict=no-build
  elif [ "$ok" = "${#specs[@]}" ]; then verdict=accepted
  elif [ "$ok" = 0 ]; then verdict=caught
  else verdict="caught in $((${#specs[@]} - ok)) of ${#specs[@]}"
  fi
  printf '%-9s %-9s %s\n' "$expected" "$verdict" "$name"
  sed 's/^/                    /' "$work/mutant.log"
  if [ "$verdict" != "$expected" ]; then failed=1; fi
done
if [ "$failed" = 1 ]; then echo "sass_ordering: a mutation's verdict differs from the expected one"; exit 1; fi
