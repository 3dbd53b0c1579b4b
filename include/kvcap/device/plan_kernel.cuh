#pragma once
// kvcap/device/plan_kernel.cuh — the device half of planning: one block lays the active
// segments end to end (segments, token_indptr, tile_indptr), with the same segment_extent
// the host used to size the workspace and the grids. When the heads of a view share its
// budget, a first pass adds up each view's heads once (a thread a view), as the host's plan
// does, so that a segment's extent reads its view's total rather than summing it again.

#include <cub/block/block_scan.cuh>

#include "ragged_plan.cuh"
#include "workspace_layout.cuh"

namespace kvcap::device::detail {

inline constexpr int plan_threads = 256;

template <class T, class Layout>
__global__ void __launch_bounds__(plan_threads)
    plan_kernel(workspace_layout<T, Layout> ws, index_t num_views, index_t num_kv_heads, index_t tile_tokens) {
  using scan = cub::BlockScan<index_t, plan_threads>;
  __shared__ typename scan::TempStorage temp;
  __shared__ index_t carry[3];  // active segments, tokens, tiles before this chunk
  if (threadIdx.x == 0) carry[0] = carry[1] = carry[2] = 0;
  if (ws.share.on)
    for (index_t view = threadIdx.x; view < num_views; view += plan_threads)
      ws.view_totals[view] = view_tokens(ws.views, ws.head_lengths, num_kv_heads, view);
  __syncthreads();  // the totals, written to global memory, are visible to the whole block
  const index_t num_segments = num_views * num_kv_heads;
  for (index_t base = 0; base < num_segments; base += plan_threads) {
    const index_t segment = base + threadIdx.x;
    extent e{};
    if (segment < num_segments)
      e = segment_extent(ws.views, ws.budgets, ws.head_lengths, ws.head_budgets, num_kv_heads, segment, ws.share,
                         ws.share.on ? ws.view_totals[segment / num_kv_heads] : 0);
    const bool active = segment < num_segments && e.active();
    const index_t one = active ? 1 : 0, tokens = active ? e.length : 0,
                  tiles = active ? (e.length + tile_tokens - 1) / tile_tokens : 0;
    index_t at_active, at_token, at_tile, sum_active, sum_tokens, sum_tiles;
    scan(temp).ExclusiveSum(one, at_active, sum_active);
    __syncthreads();
    scan(temp).ExclusiveSum(tokens, at_token, sum_tokens);
    __syncthreads();
    scan(temp).ExclusiveSum(tiles, at_tile, sum_tiles);
    if (active) {
      const index_t a = carry[0] + at_active;
      ws.segments[a] = {static_cast<std::int32_t>(segment / num_kv_heads),
                        static_cast<std::int32_t>(segment % num_kv_heads), e.length, e.keep};
      ws.token_indptr[a] = carry[1] + at_token;
      ws.tile_indptr[a] = carry[2] + at_tile;
    }
    __syncthreads();
    if (threadIdx.x == 0) carry[0] += sum_active, carry[1] += sum_tokens, carry[2] += sum_tiles;
    __syncthreads();
  }
  if (threadIdx.x == 0) ws.token_indptr[carry[0]] = carry[1], ws.tile_indptr[carry[0]] = carry[2];
}

/// The active segment holding entry `i` of an indptr-laid array (largest a: indptr[a] ≤ i).
__device__ inline index_t segment_of(const index_t* indptr, index_t num_active, index_t i) {
  index_t lo = 0, hi = num_active;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const index_t mid = lo + (hi - lo) / 2;
    if (indptr[mid] <= i) lo = mid;
    else hi = mid;
  }
  return lo;
}

}  // namespace kvcap::device::detail
