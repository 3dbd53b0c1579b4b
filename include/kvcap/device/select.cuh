#pragma once
// kvcap/device/select.cuh — per-segment top-k by rank key: one block per active segment runs
// the MSB-first radix select of rank_bits.cuh (the host reference takes the same steps), then
// counts the kept slots of each compaction tile and scans them into tile_kept_before. It
// also prepares the compaction's tile table: each tile's segment, its flag and the counter.
//
// Keys encode (protected, score, −slot), so the k largest are exactly the host's kept set,
// ties to the smaller logical index included; the first pass's histogram also counts the
// protected tokens (digits ≥ 128 have the top bit set), and a segment with more protected
// tokens than its budget is reported (nothing will move). A pass reads the segment's keys
// (8 bytes a slot, L2-resident at these sizes); most segments finish after 2 to 4 passes,
// when the chosen digit's bucket is taken whole.

#include <cub/block/block_scan.cuh>

#include "score_kernel.cuh"

namespace kvcap::device::detail {

inline constexpr int select_threads = radix_digits;  // one thread per digit when choosing
static_assert(select_threads % 32 == 0);
using select_scan = cub::BlockScan<index_t, select_threads>;

/// The compaction's tile table of active segment `a` (the whole block calls it): each tile's
/// kept slots before it (one warp per tile, then an exclusive scan over the tiles), its
/// segment, and its flag reset.
template <class T, class Layout>
__device__ void write_tile_table(const workspace_layout<T, Layout>& ws, index_t a, const selection& sel,
                                 index_t tile_tokens, typename select_scan::TempStorage& temp) {
  const index_t n = ws.segments[a].length;
  const std::uint64_t* keys = ws.keys + ws.token_indptr[a];
  const index_t tiles = (n + tile_tokens - 1) / tile_tokens;
  std::int32_t* kept_before = ws.tile_kept_before + ws.tile_indptr[a];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  for (index_t tile = warp; tile < tiles; tile += select_threads / 32) {
    const index_t begin = tile * tile_tokens, end = begin + tile_tokens < n ? begin + tile_tokens : n;
    int count = 0;
    for (index_t i = begin + lane; i < end; i += 32) count += sel.keeps(keys[i]) ? 1 : 0;
    for (int offset = 16; offset > 0; offset /= 2) count += __shfl_down_sync(0xffffffffu, count, offset);
    if (lane == 0) {
      kept_before[tile] = count;
      ws.tile_segment[ws.tile_indptr[a] + tile] = static_cast<std::int32_t>(a);  // for compact.cuh
      ws.tile_done[ws.tile_indptr[a] + tile] = 0;
    }
  }
  __syncthreads();
  index_t carry = 0;
  for (index_t base = 0; base < tiles; base += select_threads) {
    const index_t tile = base + t;
    const index_t count = tile < tiles ? kept_before[tile] : 0;
    index_t before, total;
    select_scan(temp).ExclusiveSum(count, before, total);
    __syncthreads();  // every count of this chunk is read before any is overwritten
    if (tile < tiles) kept_before[tile] = static_cast<std::int32_t>(carry + before);
    carry += total;
    __syncthreads();
  }
}

/// Shared memory a block's radix select copies its candidates into once they fit, so that the
/// passes after read them there, not all n keys again (a radix top-k with a candidate buffer,
/// as RAFT's keeps one). The selection is the same: it depends only on the candidates. A long
/// run of tied scores (recency's, the same at one position in every head) takes a pass per
/// byte of the tie-break; each then reads the few keys of its bucket.
template <class Key, int Capacity>
struct radix_candidates {
  alignas(Key) unsigned char storage[Capacity * sizeof(Key)];  // raw: a __shared__ object has no constructor run
  unsigned int count;  ///< keys copied so far (at most Capacity)
  index_t next;        ///< candidates of the next pass: the chosen digit's count
  __device__ Key* keys() { return reinterpret_cast<Key*>(storage); }
};
template <class Key>
struct radix_candidates<Key, 0> {};  ///< no buffer: every pass reads the keys

/// The block's radix select of the `keep` largest of `n` keys (0 ≤ keep < n; rank_bits.cuh, the
/// steps the host reference takes), into `st`. `top_bit` receives how many keys have their top
/// bit set (the first pass's digits 255..128: protected tokens). With keep 0 the state starts
/// done: the first pass only counts, and the select stops after it with nothing chosen.
/// Keys are loaded 4 at a time, all before any is counted: a load followed at once by the
/// shared atomic that takes it (which it might alias) would wait for each load in turn. With
/// a `buffer` (shared memory), the first pass whose candidates fit in it copies them there as
/// it counts them.
template <class Key, int Capacity = 0>
__device__ void block_radix_select(const Key* keys, index_t n, index_t keep, unsigned int* hist,
                                   basic_radix_state<Key>& st, typename select_scan::TempStorage& temp,
                                   index_t& top_bit, radix_candidates<Key, Capacity>* buffer = nullptr) {
  const int t = threadIdx.x;
  if (t == 0) {
    st = basic_radix_state<Key>{};
    st.remaining = keep;
    st.done = keep <= 0;  // no digit holds the 0th largest key
    if constexpr (Capacity > 0) buffer->count = 0, buffer->next = n;
  }
  const Key* from = keys;  // where this pass reads its candidates, and how many keys are there
  index_t m = n;
  for (bool first = true;; first = false) {
    hist[t] = 0;
    __syncthreads();
    const basic_radix_state<Key> now = st;
    bool copy = false;  // the same in every thread
    if constexpr (Capacity > 0) copy = from == keys && buffer->next <= Capacity;
    for (index_t i0 = t; i0 < m; i0 += 4 * select_threads) {
      Key key[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (i0 + u * select_threads < m) key[u] = from[i0 + u * select_threads];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (i0 + u * select_threads < m && radix_candidate(now, key[u])) {
          atomicAdd(&hist[radix_digit(now, key[u])], 1u);
          if constexpr (Capacity > 0)
            if (copy) buffer->keys()[atomicAdd(&buffer->count, 1u)] = key[u];
        }
    }
    __syncthreads();
    const int digit = radix_digits - 1 - t;  // thread t looks at the t-th largest digit
    const index_t count = hist[digit];
    index_t inclusive, total;
    select_scan(temp).InclusiveSum(count, inclusive, total);
    const index_t above = inclusive - count;
    if (first && t == radix_digits / 2 - 1) top_bit = inclusive;  // digits 255..128
    const bool chosen = radix_chosen(above, count, now.remaining);
    __syncthreads();
    if (chosen) {
      radix_advance(st, digit, above, count);
      if constexpr (Capacity > 0) buffer->next = count;
    }
    __syncthreads();
    if (st.done) break;
    if constexpr (Capacity > 0)
      if (copy) from = buffer->keys(), m = buffer->count;
  }
}

template <class T, class Layout>
__global__ void __launch_bounds__(select_threads)
    select_kernel(workspace_layout<T, Layout> ws, index_t tile_tokens, index_t num_kv_heads) {
  __shared__ typename select_scan::TempStorage temp;
  __shared__ unsigned int hist[radix_digits];
  __shared__ radix_state st;
  __shared__ index_t num_protected;

  const index_t a = blockIdx.x;
  const plan_segment seg = ws.segments[a];
  const index_t n = seg.length, keep = seg.keep;
  const std::uint64_t* keys = ws.keys + ws.token_indptr[a];
  const int t = threadIdx.x;
  // Shared budgets: this is the head's floor, and the heads' competition checks the
  // protected tokens (shared_heads.cuh).
  const bool check_protected = !ws.share.on;

  if (keep >= n) {  // not planned as active; kept for completeness
    if (t == 0) ws.selections[a] = selection::all(n);
  } else {  // budget 0 too: its one pass counts the protected tokens, all of them too many
    block_radix_select(keys, n, keep, hist, st, temp, num_protected);
    if (t == 0) {
      ws.selections[a] = radix_result(st, keep);
      if (num_protected > keep && check_protected)
        report_failure(ws.report, errc::budget_below_protected, seg.view * num_kv_heads + seg.head, num_protected, keep);
    }
  }
  __syncthreads();
  const selection sel = ws.selections[a];  // written above by thread 0 of this block
  if (ws.share.on) {  // the head's floor: above every key the heads then compete by
    for (index_t i = t; i < n; i += select_threads)
      if (sel.keeps(keys[i])) ws.shared_keys[ws.token_indptr[a] + i] = floor_kept_key;
    return;
  }
  if (a == 0 && t == 0) ws.tile_done[ws.tile_indptr[gridDim.x]] = 0;  // the compaction's tile counter
  write_tile_table(ws, a, sel, tile_tokens, temp);
}

}  // namespace kvcap::device::detail
