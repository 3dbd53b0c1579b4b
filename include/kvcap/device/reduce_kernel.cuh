#pragma once
// kvcap/device/reduce_kernel.cuh — the reducer's turn on the device, between selection and
// compaction: one warp per active segment runs the SAME reducer policy the host runs,
// through segment_reduce_context. A reducer written for a thread group (reducers::merge)
// runs with the whole warp (core/thread_group.hpp); any other runs on the warp's first lane.
// Reducers that do not merge (evict) are not launched at all.
//
// A merge is sequential within a segment (a dropped token's cosines see the folds of the
// tokens before it, as on the host), so segments run side by side and each warp walks its
// segment's dropped tokens in slot order. When the device found a metadata error (the report
// is set), no warp writes anything.

#include <cuda/atomic>

#include "reduce_context.cuh"
#include "score_kernel.cuh"
#include "warp_group.cuh"

namespace kvcap::device::detail {

inline constexpr int reduce_threads = 128;  // 4 segments per block
inline constexpr int reduce_warps = reduce_threads / 32;

template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(reduce_threads)
    reduce_kernel(workspace_layout<T, Layout> ws, index_t active, compress_policies<Scorer, Structure, Reducer> policies) {
  const index_t a = blockIdx.x * static_cast<index_t>(reduce_warps) + threadIdx.x / 32;
  if (a >= active) return;
  if (cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>(ws.report->code).load(cuda::memory_order_relaxed) != 0)
    return;  // warp-uniform: every lane reads the same report
  const plan_segment seg = ws.segments[a];
  segment_reduce_context<T, Layout, Structure> ctx{{ws.views + seg.view, &policies.structure, seg.head, seg.length},
                                                   ws.keys + ws.token_indptr[a],
                                                   ws.selections[a]};
  const warp_group warp;
  if constexpr (group_reducer<Reducer, decltype(ctx), warp_group>) policies.reducer.reduce(ctx, warp);
  else if (warp.rank() == 0) policies.reducer.reduce(ctx);
}

}  // namespace kvcap::device::detail
