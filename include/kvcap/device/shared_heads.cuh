#pragma once
// kvcap/device/shared_heads.cuh — the heads of a view share its budget
// (compress_batch::share_heads; the host executor's budgets::head_adaptive).
//
// The plan makes every head of a view with tokens to drop an active segment whose `keep` is
// its floor; select.cuh selects each head's floor and marks those tokens. Then one block per
// view:
//   1. counts what the floors leave: extra = kv_heads · budget − Σ_heads min(resident, floor);
//   2. radix-selects the (active heads · floor + extra) largest shared keys of the view's
//      active segments (rank_bits.cuh: encode_shared_rank; floor tokens rank above all), so
//      the extra tokens are the best of the rest by ranks_before and then the smaller head.
//      Its first pass also counts the protected tokens outside the floors. Once the
//      candidates fit in shared memory (share_candidates), the passes after read them there:
//      a view's keys are kv_heads times a segment's, and recency ties every head at each
//      position, so the select may take a pass per byte of the logical index;
//   3. folds the decision into each token's rank key (its top bit: kept) and each segment's
//      selection, so that the reducer and the compaction read it as any selection;
//   4. writes each head's length, and the compaction's tile tables.
// A view with nothing to drop only writes its lengths. share_lengths_kernel then hands the
// lengths to the caller's head_lengths_device_out, unless a check failed (the engine's
// lengths, like its cache, are then left as they were). Protected tokens outside the floors
// beyond `extra` are reported (budget_below_protected at the view's first segment).

#include <cuda/atomic>

#include "select.cuh"

namespace kvcap::device::detail {

/// Wide keys the heads' competition holds in shared memory (32 KiB) once its candidates fit.
inline constexpr int share_candidates = 2048;

/// The first active segment of view `view` or a later one (segments lie in view order).
__device__ inline index_t first_segment_of(const plan_segment* segments, index_t num_active, index_t view) {
  index_t lo = 0, hi = num_active;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (segments[mid].view < view) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

template <class T, class Layout>
__global__ void __launch_bounds__(select_threads)
    share_kernel(workspace_layout<T, Layout> ws, index_t num_views, index_t num_active, index_t num_kv_heads,
                 index_t tile_tokens) {
  index_t* const head_lengths_out = ws.shared_lengths;
  __shared__ typename select_scan::TempStorage temp;
  __shared__ unsigned int hist[radix_digits];
  __shared__ basic_radix_state<wide_key> st;
  __shared__ radix_candidates<wide_key, share_candidates> candidates;
  __shared__ index_t top_bit;
  const int t = threadIdx.x;
  if (blockIdx.x == 0 && t == 0 && num_active > 0) ws.tile_done[ws.tile_indptr[num_active]] = 0;  // tile counter
  for (index_t view = blockIdx.x; view < num_views; view += gridDim.x) {
    const index_t first = view * num_kv_heads;
    // Every head's length as it stands: what a head with nothing to drop keeps (every head,
    // in a view that keeps all). An active head's is overwritten in 3, 4 with what it keeps,
    // after the barriers of 1 and 2. (So this kernel needs no view total: which heads are
    // active is the plan's list, a0 .. a1.)
    for (index_t head = t; head < num_kv_heads; head += select_threads)
      head_lengths_out[first + head] = segment_length(ws.views, ws.head_lengths, num_kv_heads, first + head);
    const index_t a0 = first_segment_of(ws.segments, num_active, view);
    const index_t a1 = first_segment_of(ws.segments, num_active, view + 1);
    if (a0 == a1) continue;

    // 1. What the floors leave.
    const index_t budget = ws.budgets[view], floor = ws.share.rule.floor(budget);
    index_t mine = 0, floors = 0, ignored = 0;
    for (index_t head = t; head < num_kv_heads; head += select_threads) {
      const index_t n = segment_length(ws.views, ws.head_lengths, num_kv_heads, first + head);
      mine += n < floor ? n : floor;
    }
    select_scan(temp).ExclusiveSum(mine, ignored, floors);
    __syncthreads();
    const index_t extra = num_kv_heads * budget - floors;  // below the view's resident tokens
    const index_t keep = (a1 - a0) * floor + extra;        // below its active segments' tokens
    const index_t begin = ws.token_indptr[a0], n = ws.token_indptr[a1] - begin;
    const wide_key* keys = ws.shared_keys + begin;

    // 2. The extra tokens: the best of the rest, across heads. Protected tokens outside the
    // floors (at most `extra` fit): the keys with their top bit set, less the floors' tokens
    // (floor_kept_key; each active head's select kept exactly `floor`).
    // Budget 0 has no floors: its select only counts, and every protected token is one too many.
    block_radix_select(keys, n, keep, hist, st, temp, top_bit, &candidates);
    const basic_selection<wide_key> sel = radix_result(st, keep);
    const index_t protected_rest = top_bit - (a1 - a0) * floor;
    if (t == 0 && protected_rest > extra)
      report_failure(ws.report, errc::budget_below_protected, first, protected_rest, extra);

    // 3, 4. The decision into every rank key, each segment's selection, length and tiles.
    for (index_t a = a0; a < a1; ++a) {
      const index_t at = ws.token_indptr[a], len = ws.segments[a].length;
      index_t kept_mine = 0, kept = 0;
      for (index_t i = t; i < len; i += select_threads) {
        const bool keeps = sel.keeps(ws.shared_keys[at + i]);
        ws.keys[at + i] = mark_kept(ws.keys[at + i], keeps);
        kept_mine += keeps ? 1 : 0;
      }
      select_scan(temp).ExclusiveSum(kept_mine, ignored, kept);
      const selection decided = marked_selection(kept);
      if (t == 0) {
        ws.selections[a] = decided;
        head_lengths_out[first + ws.segments[a].head] = kept;
      }
      __syncthreads();  // the keys are rewritten before the tile table counts them
      write_tile_table(ws, a, decided, tile_tokens, temp);
      __syncthreads();
    }
  }
}

/// Each head's length into the caller's `out`, unless a check failed (after share_kernel).
template <class T, class Layout>
__global__ void __launch_bounds__(256)
    share_lengths_kernel(workspace_layout<T, Layout> ws, index_t num_segments, index_t* out) {
  if (cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>(ws.report->code).load(cuda::memory_order_relaxed) != 0)
    return;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < num_segments;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[i] = ws.shared_lengths[i];
}

}  // namespace kvcap::device::detail
