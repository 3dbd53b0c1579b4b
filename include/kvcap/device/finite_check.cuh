#pragma once
// kvcap/device/finite_check.cuh — NaN and Inf become a status on the device, as they are an
// exception on the host: the host executor checks each chunk's K and V at append and each
// observation window at compress; on the device the engine writes the cache itself, so the
// call checks what it is given before anything moves.
//
//   finite_kv_kernel      (row block, segment)  K and V of every segment's checked slots
//   finite_window_kernel  (element block, view) every element of each view's window
//
// A segment's checked slots are its last `appended[view]` (compress_batch::appended, the
// tokens written since the view was last compressed: what the host checks at append), or all
// of its resident slots; every segment is checked, whether or not it has tokens to drop.
// Windows are checked when the scorer reads them. A failure is reported (report_failure: the
// first wins) before the reducer and the compaction run, and neither writes anything after
// one: the cache is unchanged.

#include <math.h>

#include <cstring>

#include "launch.cuh"
#include "score_kernel.cuh"
#include "vectors.cuh"

namespace kvcap::device::detail {

inline constexpr int finite_threads = 256;
inline constexpr index_t finite_rows = 64;    ///< slots of a segment a finite_kv_kernel block checks
inline constexpr int finite_batch = 4;        ///< vectors of K (and of V) a thread loads before it tests any
inline constexpr index_t finite_window_elements = finite_threads * 8;  ///< a window block's elements

/// Every element of `x`, a vector of whole `T`s, is finite.
template <class T, class Vec>
__device__ inline bool finite_elements(const Vec& x) {
  static_assert(sizeof(Vec) % sizeof(T) == 0, "a vector of whole elements");
  T e[sizeof(Vec) / sizeof(T)];
  std::memcpy(static_cast<void*>(e), &x, sizeof x);  // (void*: T may be a class, such as __half)
  bool finite = true;
#pragma unroll
  for (const T& y : e) finite = finite && isfinite(static_cast<float>(y));
  return finite;
}

/// Checks K and V of slots [first + blockIdx.x · finite_rows, +finite_rows) of segments
/// blockIdx.y, blockIdx.y + gridDim.y, … . `VecBytes` ≥ sizeof(T) divides every row start.
template <int VecBytes, class T, class Layout>
__global__ void __launch_bounds__(finite_threads)
    finite_kv_kernel(workspace_layout<T, Layout> ws, index_t num_segments, index_t num_kv_heads) {
  using vec = typename vector_of<VecBytes>::type;
  static_assert(VecBytes >= static_cast<int>(sizeof(T)) && VecBytes % sizeof(T) == 0);
  __shared__ index_t row_at[finite_rows];  // the block's slots' K/V element offsets
  const int t = threadIdx.x;
  for (index_t segment = blockIdx.y; segment < num_segments; segment += gridDim.y) {
    const index_t view_index = segment / num_kv_heads, head = segment % num_kv_heads;
    const index_t length = segment_length(ws.views, ws.head_lengths, num_kv_heads, segment);
    const index_t begin = first_checked_slot(length, ws.appended, view_index) + blockIdx.x * finite_rows;
    if (begin >= length) continue;  // block-uniform
    const auto& view = ws.views[view_index];
    const int rows = static_cast<int>(length - begin < finite_rows ? length - begin : finite_rows);
    if (t < rows) row_at[t] = view.mapping(begin + t, head);
    __syncthreads();
    const int row_vecs = static_cast<int>(view.mapping.head_dim * static_cast<index_t>(sizeof(T)) / VecBytes);
    const int vecs = rows * row_vecs;
    for (int i0 = t; i0 < vecs; i0 += finite_batch * finite_threads) {
      vec k[finite_batch], v[finite_batch];
#pragma unroll
      for (int u = 0; u < finite_batch; ++u)
        if (const int i = i0 + u * finite_threads; i < vecs) {
          const index_t at = row_at[i / row_vecs];
          k[u] = __ldcg(reinterpret_cast<const vec*>(view.k + at) + i % row_vecs);
          v[u] = __ldcg(reinterpret_cast<const vec*>(view.v + at) + i % row_vecs);
        }
#pragma unroll
      for (int u = 0; u < finite_batch; ++u)
        if (const int i = i0 + u * finite_threads; i < vecs) {
          if (!finite_elements<T>(k[u]))
            report_failure(ws.report, errc::not_finite, segment, 0, begin + i / row_vecs, finite_input::k);
          if (!finite_elements<T>(v[u]))
            report_failure(ws.report, errc::not_finite, segment, 0, begin + i / row_vecs, finite_input::v);
        }
    }
    __syncthreads();  // row_at is read before the next segment's block rewrites it
  }
}

/// Checks elements [blockIdx.x · finite_window_elements, +finite_window_elements) of the
/// windows of views blockIdx.y, blockIdx.y + gridDim.y, … (an empty window has none).
template <class T, class Layout>
__global__ void __launch_bounds__(finite_threads) finite_window_kernel(workspace_layout<T, Layout> ws, index_t num_views) {
  for (index_t view = blockIdx.y; view < num_views; view += gridDim.y) {
    const kv_tensor<const T> w = ws.windows[view];
    const index_t elements = w.size(), begin = blockIdx.x * finite_window_elements;
    const index_t end = begin + finite_window_elements < elements ? begin + finite_window_elements : elements;
    for (index_t e = begin + threadIdx.x; e < end; e += finite_threads)
      if (!isfinite(static_cast<float>(w.data[e])))
        report_failure(ws.report, errc::not_finite, view, 0, window_query_of(w, e), finite_input::window);
  }
}

}  // namespace kvcap::device::detail
