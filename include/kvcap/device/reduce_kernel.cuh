#pragma once
// kvcap/device/reduce_kernel.cuh — the reducer's turn on the device, between selection and
// compaction: one warp per active segment runs the SAME reducer policy the host runs,
// through segment_reduce_context. A reducer written for a thread group (reducers::merge)
// runs with the whole warp (core/thread_group.hpp); any other runs on the warp's first lane.
// Reducers that do not merge (evict) are not launched at all.
//
// Here a reducer is sequential within a segment (a merge's dropped token sees the folds of
// the tokens before it, as on the host), so segments run side by side and each warp walks its
// segment's dropped tokens in slot order. A local reducer (reducers::merge) runs in rounds
// instead, a block per segment (reduce_rounds.cuh), with the same result. Each warp has shared
// memory of its own for the rows its reducer stages (a merge: the dropped token's key and its
// candidates'), when they fit.
// When the device found a metadata error (the report is set), no warp writes anything.

#include <cuda/atomic>

#include <cstddef>

#include "launch.cuh"
#include "reduce_context.cuh"
#include "score_kernel.cuh"
#include "warp_group.cuh"

namespace kvcap::device::detail {

inline constexpr int reduce_threads = 128;  // 4 segments per block
inline constexpr int reduce_warps = reduce_threads / 32;
/// Shared memory a block may use without opting in.
inline constexpr std::size_t reduce_smem_limit = 48 * 1024;

/// Rows a reducer has its group stage at once (Reducer::staged_rows; 0: none).
template <class Reducer>
inline constexpr int staged_rows_of = [] {
  if constexpr (requires { Reducer::staged_rows; }) return static_cast<int>(Reducer::staged_rows);
  else return 0;
}();

/// Each warp's staging (16-byte multiples) for rows of `head_dim` elements of T; 0 when the
/// block's `warps` stagings and `static_bytes` would pass reduce_smem_limit (the warps then
/// read the rows where they are).
template <class T, class Reducer>
std::size_t reduce_scratch_bytes(index_t head_dim, int warps = reduce_warps, std::size_t static_bytes = 0) {
  const std::size_t rows = static_cast<std::size_t>(staged_rows_of<Reducer>) * static_cast<std::size_t>(head_dim) * sizeof(T);
  const std::size_t per_warp = (rows + 15) / 16 * 16;
  return per_warp * static_cast<std::size_t>(warps) + static_bytes <= reduce_smem_limit ? per_warp : 0;
}

/// The reduce context of active segment `a` (this kernel's and reduce_rounds.cuh's).
template <class T, class Layout, class Structure>
__device__ segment_reduce_context<T, Layout, Structure> reduce_context_of(const workspace_layout<T, Layout>& ws, index_t a,
                                                                          const Structure& structure) {
  const plan_segment seg = ws.segments[a];
  return {{ws.views + seg.view, &structure, seg.head, seg.length}, ws.keys + ws.token_indptr[a], ws.selections[a]};
}

/// Dynamic shared memory: reduce_warps × `scratch_bytes`, a warp's own at its index.
template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(reduce_threads)
    reduce_kernel(workspace_layout<T, Layout> ws, index_t active, std::size_t scratch_bytes,
                  compress_policies<Scorer, Structure, Reducer> policies) {
  const int warp_index = static_cast<int>(threadIdx.x / 32);
  const index_t a = blockIdx.x * static_cast<index_t>(reduce_warps) + warp_index;
  if (a >= active) return;
  if (cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>(ws.report->code).load(cuda::memory_order_relaxed) != 0)
    return;  // warp-uniform: every lane reads the same report
  auto ctx = reduce_context_of(ws, a, policies.structure);
  const warp_group warp{dynamic_shared<unsigned char>() + warp_index * scratch_bytes, scratch_bytes};
  if constexpr (group_reducer<Reducer, decltype(ctx), warp_group>) policies.reducer.reduce(ctx, warp);
  else if (warp.rank() == 0) policies.reducer.reduce(ctx);
}

}  // namespace kvcap::device::detail
