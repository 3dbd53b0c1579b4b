#!/usr/bin/env bash
# tools/device/simt_mutations.sh — does the CPU SIMT emulator (tests/device/simt) catch broken
# kernels? Applies one known bug at a time to a scratch copy of the sources (a missing barrier,
# a missing warp sync, an off-by-one in the merge's warp path, a wrong rule or bracket in the
# merge's rounds, the compaction's staging loop stepping by the wrong copy batch, the
# compaction's tiles not waiting for the tiles they overwrite, publishing too early or writing
# before the first warp's polls end), builds the device parity tests for the emulator and runs
# them on a sample of the randomized cases; "window mass: …" mutations undo how a short head
# meets a causal window longer than it. Mutations named "checks: …" remove one of the
# device-side checks (NaN/Inf, metadata, budget 0, the workspace's base, the failure log) and
# are run against the error cases (test_device_errors.cu) instead.
# Prints one line per mutation: the emulator's verdict, which should be a failure for each
# but three, which say why they are redundant (a barrier after a round's turns that the next
# round's barrier already orders; a __syncwarp that the merge's own warp reduction already
# makes redundant in the emulator's model; the shared heads' barrier before the tile table,
# after a block scan that synchronizes the block anyway). "shared heads: …" mutations break
# the heads' competition for a shared budget (shared_heads.cuh).
#
#   bash tools/device/simt_mutations.sh [SCALE]     # SCALE: KVCAP_DEVICE_TEST_SCALE, 0.05 default
#   KVCAP_MUTATIONS='merge rounds' bash tools/device/simt_mutations.sh   # only those matching
#   KVCAP_SIMT_RESIDENT=1 bash tools/device/simt_mutations.sh   # blocks one after another (simt.hpp)
#   bash tools/device/simt_mutations.sh --targets   # only: is every mutation's text still in the source
#
# Needs g++, the CUDA Toolkit's headers (CUDA_HOME, /usr/local/cuda by default), Eigen and
# doctest (Debian's libeigen3-dev and doctest-dev). Takes about 2 minutes a mutation on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scale=${1:-0.05}
[ "$scale" = --targets ] && scale=0.05
cuda=${CUDA_HOME:-/usr/local/cuda}
limit=${KVCAP_MUTATION_TIMEOUT:-600}  # seconds a mutated run may take (an unmutated one: about 1 minute)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -w -pthread -isystem "$cuda/include" -isystem "$cuda/include/cccl" -isystem /usr/include/eigen3)  # after -I: the stand-in CUB first

# name | file | text to replace (first occurrence) | replacement
mutations=(
  "staged_walk: no barrier after a tile is published|include/kvcap/device/staged_walk.cuh|    publish(base);
    __syncthreads();|    publish(base);"
  "staged_walk: no barrier before the next tile overwrites the last|include/kvcap/device/staged_walk.cuh|    __syncthreads();  // the previous tile is no longer used|"
  "compact: no barrier between the two block scans|include/kvcap/device/compact.cuh|  const bool moving = kept && dst != tok;
  __syncthreads();|  const bool moving = kept && dst != tok;"
  "compact: the staging loop steps by 4 batches whatever the copy batch|include/kvcap/device/compact.cuh|i += CopyBatch * compact_threads|i += 4 * compact_threads"
  "compact: no wait for the earlier tiles the destinations overwrite|include/kvcap/device/compact.cuh|      while (flag(ws.tile_done[other]).load(cuda::memory_order_acquire) == 0) __nanosleep(100);|      (void)other;"
  "compact: waits for the first of the earlier tiles only|include/kvcap/device/compact.cuh|other <= last && other < g|other <= first && other < g"
  "compact: no barrier between the first warp's polls and the writes|include/kvcap/device/compact.cuh|  }
  __syncthreads();
  if (t == 0) probe(g, compact_phase::released);|  }
  if (t == 0) probe(g, compact_phase::released);"
  "compact: 'read' published before the barrier that ends the staging|include/kvcap/device/compact.cuh|  __syncthreads();
  if (t == 0) {
    flag(ws.tile_done[g]).store(1, cuda::memory_order_release);|  if (t == 0) flag(ws.tile_done[g]).store(1, cuda::memory_order_release);
  __syncthreads();
  if (t == 0) {"
  "window mass: no barrier before the warps' partial sums are added|include/kvcap/device/window_kernel.cuh|  partial[warp][lane] = acc;
  __syncthreads();|  partial[warp][lane] = acc;"
  "warp stage: no __syncwarp between the stores and the reads|include/kvcap/device/warp_group.cuh|        if (const int i = i0 + u * 32; i < total) out[i] = x[u];
    }
    __syncwarp();|        if (const int i = i0 + u * 32; i < total) out[i] = x[u];
    }"
  "shared heads: the floors not marked (every token competes)|include/kvcap/device/select.cuh|      if (sel.keeps(keys[i])) ws.shared_keys[ws.token_indptr[a] + i] = floor_kept_key;|      (void)sel;"
  "shared heads: the floors not subtracted from what is left|include/kvcap/device/shared_heads.cuh|const index_t extra = num_kv_heads * budget - floors;|const index_t extra = num_kv_heads * budget;"
  "shared heads: ties across heads to the larger head|include/kvcap/device/rank_bits.cuh|static_cast<std::uint64_t>((max_segment_slots - 1) - head)|static_cast<std::uint64_t>(head)"
  "shared heads: no barrier between the keys' rewrite and the tile table (redundant: the block scan between them synchronizes)|include/kvcap/device/shared_heads.cuh|      __syncthreads();  // the keys are rewritten before the tile table counts them|"
  "shared heads: the candidates read back by the chosen digit's count, not the copied count|include/kvcap/device/select.cuh|if (copy) from = buffer->keys(), m = buffer->count;|if (copy) from = buffer->keys(), m = static_cast<index_t>(buffer->next);"
  "shared heads: candidates copied on every pass (the buffer overruns)|include/kvcap/device/select.cuh|copy = from == keys && buffer->next <= Capacity;|copy = from == keys;"
  "shared heads: a view's segments found one too far|include/kvcap/device/shared_heads.cuh|    if (segments[mid].view < view) lo = mid + 1;|    if (segments[mid].view <= view) lo = mid + 1;"
  "shared heads: the plan reads no view total (every view keeps all)|include/kvcap/device/plan_kernel.cuh|ws.share.on ? ws.view_totals[segment / num_kv_heads] : 0|0"
  "shared heads: the plan's view totals short by length / kv_heads|include/kvcap/device/plan_kernel.cuh|      ws.view_totals[view] = view_tokens(ws.views, ws.head_lengths, num_kv_heads, view);|      ws.view_totals[view] = view_tokens(ws.views, ws.head_lengths, num_kv_heads, view) - ws.views[view].length / num_kv_heads;"
  "shared heads: the lengths of heads with nothing to drop not written|include/kvcap/device/shared_heads.cuh|      head_lengths_out[first + head] = segment_length(ws.views, ws.head_lengths, num_kv_heads, first + head);|      (void)head_lengths_out;"
  "shared heads: a head's floor counted from the view's first head's length|include/kvcap/device/shared_heads.cuh|      const index_t n = segment_length(ws.views, ws.head_lengths, num_kv_heads, first + head);|      const index_t n = segment_length(ws.views, ws.head_lengths, num_kv_heads, first);"
  "merge: the warp's next kept slot one too far|include/kvcap/reducers/merge.hpp|return base + lowest_bit(kept);|return base + lowest_bit(kept) + (kept > 1u ? 1 : 0);"
  "merge rounds: ready on winning the first claim alone|include/kvcap/device/reduce_rounds.cuh|for (int c = 0; c < count; ++c) won = won &&|for (int c = 0; c < count && c < 1; ++c) won = won &&"
  "merge rounds: no barrier between the claims and their check|include/kvcap/device/reduce_rounds.cuh|.fetch_min(i, cuda::memory_order_relaxed);
    });
    __syncthreads();|.fetch_min(i, cuda::memory_order_relaxed);
    });"
  "merge rounds: no barrier after a round's turns (redundant for the result)|include/kvcap/device/reduce_rounds.cuh|    __syncthreads();  // the folds and flags, before the next round reads them|"
  "merge rounds: the turns left after the rounds skipped|include/kvcap/device/reduce_rounds.cuh|  if (warp_index != 0) return;|  return;"
  "merge rounds: open tokens take the word's last kept slot as the next|include/kvcap/device/reduce_rounds.cuh|dropped[j].after = static_cast<std::int32_t>(base + lowest_bit(kept));|dropped[j].after = static_cast<std::int32_t>(base + highest_bit(kept));"
  "merge rounds: a stretch without kept slots loses the carried kept slot before|include/kvcap/device/reduce_rounds.cuh|before = stretch_last[w] > before ? stretch_last[w] : before;|before = stretch_last[w];"
  "warp stage: no __syncwarp before the stores (redundant here)|include/kvcap/device/warp_group.cuh|    __syncwarp();  // every lane has finished reading the rows staged before|"
  "window mass: averaged over every row (a short head's queries before its first slot counted)|include/kvcap/device/window_kernel.cuh|window_seeing_rows(n, site.window.num_tokens, site.group, causal)|site.rows"
  "window mass: a causal window checked against each head, not the view's longest|include/kvcap/device/ragged_plan.cuh|batch.window_is_chunk_tail && w > resident|batch.window_is_chunk_tail && w > e.length"
  "checks: no failure log written|include/kvcap/device/compressor.cuh|  if (batch.failure_log == nullptr) return ok_status;|  return ok_status;"
  "checks: the failure log takes every failure, not the first|include/kvcap/device/failure_log.cuh|  if (atomicCAS(&log->code, 0, report->code) == 0) {|  if ((log->code = report->code), true) {"
  "checks: the K/V NaN check not launched|include/kvcap/device/compressor.cuh|  if (p.checked_tokens > 0) {|  if (false) {"
  "checks: appended ignored (every slot checked)|include/kvcap/device/ragged_plan.cuh|  return appended != nullptr ? length - appended[view] : 0;|  return 0;"
  "checks: a window's NaN check not launched|include/kvcap/device/compressor.cuh|  if (needs.window_mass && p.window_elements > 0) {|  if (false) {"
  "checks: no upload when only windows are read|include/kvcap/device/compressor.cuh|p.checked_tokens == 0 && p.window_elements == 0 && !p.share.on)|p.checked_tokens == 0 && !p.share.on)"
  "checks: the structure check removed|include/kvcap/device/score_kernel.cuh|    if (!policies.structure.check(s.ctx.meta(s.tok)).ok)|    if (false)"
  "checks: budget 0's protected tokens not reported|include/kvcap/device/select.cuh|      if (num_protected > keep && check_protected)|      if (num_protected > keep && check_protected && keep > 0)"
  "checks: shared budgets: protected tokens past what the floors leave not reported|include/kvcap/device/shared_heads.cuh|    if (t == 0 && protected_rest > extra)|    if (false)"
  "checks: shared budgets: the floors' tokens counted as protected|include/kvcap/device/shared_heads.cuh|protected_rest = top_bit - (a1 - a0) * floor;|protected_rest = top_bit;"
  "checks: shared budgets: budget 0's protected tokens not counted|include/kvcap/device/shared_heads.cuh|protected_rest = top_bit - (a1 - a0) * floor;|protected_rest = keep > 0 ? top_bit - (a1 - a0) * floor : 0;"
  "checks: shared budgets: the heads' lengths handed over after a failed check|include/kvcap/device/shared_heads.cuh|.load(cuda::memory_order_relaxed) != 0)
    return;|.load(cuda::memory_order_relaxed) != 0 && false)
    return;"
  "checks: read_status reads the caller's base, not the carve's|include/kvcap/device/compressor.cuh|static_cast<const device_report*>(workspace_base(d_temp_storage))|static_cast<const device_report*>(d_temp_storage)"
)
source "$root/tools/mutations/select.sh"
select_mutations "${mutations[@]}"

if [ "${1:-}" = --targets ]; then  # only: is every mutation's text still in the source?
  missing=0
  for m in "${selected[@]}"; do
    IFS='|' read -r -d '' name file old new < <(printf '%s\0' "$m") || true
    cp "$root/$file" "$work/target"
    python3 "$root/tools/mutations/apply_mutation.py" "$work/target" "$old" "$new" || missing=$((missing + 1))
  done
  echo "${#selected[@]} mutations, $missing whose text is no longer in the source"
  exit $((missing > 0))
fi

echo "kvcap SIMT emulator mutations: scale $scale, resident blocks ${KVCAP_SIMT_RESIDENT:-1 to 4 a launch}, $(g++ --version | head -1), $(lscpu | sed -n "s/^Model name: *//p") ($(nproc) cores), $(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- include tests || echo " (with local changes)")"
g++ "${flags[@]}" -I"$root/tests/device/simt/include" -I"$root/include" -c "$root/tests/device/simt/test_main_on_cpu.cpp" -o "$work/main.o"
g++ "${flags[@]}" -I"$root/include" -c "$root/tests/device/simt/runtime.cpp" -o "$work/runtime.o"
for m in "${selected[@]}"; do
  IFS='|' read -r -d '' name file old new < <(printf '%s\0' "$m") || true
  copy="$work/src"
  rm -rf "$copy" && mkdir -p "$copy" && cp -r "$root/include" "$root/tests" "$copy/"
  python3 "$root/tools/mutations/apply_mutation.py" "$copy/$file" "$old" "$new"
  cases=parity
  case "$name" in checks:*) cases=errors ;; esac
  g++ "${flags[@]}" -I"$copy/tests/device/simt/include" -I"$copy/include" \
      -c "$copy/tests/device/simt/test_${cases}_on_cpu.cpp" -o "$work/cases.o"
  g++ -pthread -o "$work/t" "$work/cases.o" "$work/main.o" "$work/runtime.o"
  # An abort is a verdict: an inner shell waits for it, so its "Aborted" notice goes to /dev/null.
  # So is a hang (a radix select that never finds its digit loops forever): timeout's 124.
  rc=$(bash -c '"$@" > "$0" 2>&1; echo $?' "$work/out.log" timeout "$limit" env KVCAP_DEVICE_TEST_SCALE="$scale" \
       "$work/t" 2> /dev/null)
  verdict=$(grep -E '^\[doctest\] test cases|kvcap SIMT emulator:' "$work/out.log" | head -1 | sed 's/^\[doctest\] //' ||
            true)  # a killed run may have printed no summary
  [ "$rc" -eq 124 ] && verdict="hung: killed after $limit s"
  if [ "$rc" -eq 0 ]; then echo "NOT CAUGHT  $name: $verdict"; else echo "caught      $name: rc $rc, $verdict"; fi
done
