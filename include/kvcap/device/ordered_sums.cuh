#pragma once
// kvcap/device/ordered_sums.cuh — the sums over a segment's slots that must be added in slot
// order, as the host executor adds them, so that host and device agree bit for bit:
//
//   mean_kernel   (segment, 32 dims)   mean of k/|k|, a lane per dim (key_diff)
//   stats_kernel  (segment, component) mean and 1/std in double (composite scorers)
//
// Only the adds form a chain; the loads need not. A thread that walked its slots alone would
// wait for memory every few slots, and the sums are few (64 segments × 128 dims is 8,192
// chains for 1.25 MB each), so the block brings the slots through shared memory a tile at a
// time and one thread per chain adds them, while the block's loads of the next tile are in
// flight (staged_walk). The terms, and their order, are those of the host-callable
// definitions in score_context.cuh (unit_key_term, component_sums), which the host
// reference of the device algorithm runs slot by slot.

#include "score_kernel.cuh"
#include "staged_walk.cuh"

namespace kvcap::device::detail {

inline constexpr int mean_threads = 256;
inline constexpr int mean_dims = 32;     ///< dims a block sums, a lane of its first warp each
inline constexpr int mean_tile = 256;    ///< slots a block stages at a time (32 KiB of terms)
inline constexpr int mean_slots_per_thread = mean_tile / (mean_threads / 32);

/// Grid: (active segments) × ceil(head_dim / mean_dims). Warp w of the block fetches slots
/// w, w + 8, … of a tile, a dim a lane (64 coalesced bytes of a half row); the first warp adds.
template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(mean_threads)
    mean_kernel(workspace_layout<T, Layout> ws, index_t head_dim, compress_policies<Scorer, Structure, Reducer>) {
  __shared__ float terms[mean_tile][mean_dims];
  __shared__ float tile_norms[mean_tile];
  const index_t chunks = (head_dim + mean_dims - 1) / mean_dims;
  const index_t a = blockIdx.x / chunks;
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const index_t dim = blockIdx.x % chunks * mean_dims + lane;
  const plan_segment seg = ws.segments[a];
  const layer_view<T, Layout> view = ws.views[seg.view];  // read once, not per slot
  const float* norms = ws.norms + ws.token_indptr[a];
  const index_t n = seg.length;

  float x[mean_slots_per_thread], w[mean_slots_per_thread];
  const auto slot = [&](index_t base, int j) { return base + warp + j * (mean_threads / 32); };
  float acc = 0.f;
  staged_walk(
      n, mean_tile,
      [&](index_t base) {
#pragma unroll
        for (int j = 0; j < mean_slots_per_thread; ++j)
          if (const index_t tok = slot(base, j); tok < n)
            w[j] = norms[tok], x[j] = dim < head_dim ? view.key(tok, seg.head)[dim] : 0.f;
      },
      [&](index_t base) {
#pragma unroll
        for (int j = 0; j < mean_slots_per_thread; ++j)
          if (const index_t tok = slot(base, j); tok < n) {
            const int row = static_cast<int>(tok - base);
            terms[row][lane] = unit_key_term::counts(w[j]) ? unit_key_term::of(x[j], w[j]) : 0.f;
            if (lane == 0) tile_norms[row] = w[j];
          }
      },
      [&](index_t, index_t count) {
        if (warp == 0)
          for (index_t row = 0; row < count; ++row)
            if (unit_key_term::counts(tile_norms[row])) acc += terms[row][lane];
      });
  if (warp == 0 && dim < head_dim) ws.mean_keys[a * head_dim + dim] = acc / static_cast<float>(n);
}

inline constexpr int stats_threads = 256;
inline constexpr int stats_tile = 1024;  ///< slots a block stages at a time
inline constexpr int stats_slots_per_thread = stats_tile / stats_threads;

/// Grid: (active segments) × (components). Thread 0 adds the staged tile.
template <class T, class Layout, class Scorer>
__global__ void __launch_bounds__(stats_threads) stats_kernel(workspace_layout<T, Layout> ws) {
  constexpr index_t num = num_components_v<Scorer>;
  __shared__ float values[stats_tile];
  const index_t a = blockIdx.x / num, c = blockIdx.x % num, n = ws.segments[a].length;
  const float* comp = ws.components + num * ws.token_indptr[a] + c * n;
  const int t = static_cast<int>(threadIdx.x);

  float v[stats_slots_per_thread];
  component_sums sums;
  staged_walk(
      n, stats_tile,
      [&](index_t base) {
#pragma unroll
        for (int j = 0; j < stats_slots_per_thread; ++j)
          if (const index_t tok = base + t + j * stats_threads; tok < n) v[j] = comp[tok];
      },
      [&](index_t base) {
#pragma unroll
        for (int j = 0; j < stats_slots_per_thread; ++j)
          if (base + t + j * stats_threads < n) values[t + j * stats_threads] = v[j];
      },
      [&](index_t, index_t count) {
        if (t == 0)
          for (index_t i = 0; i < count; ++i) sums.add(values[i]);
      });
  if (t == 0) sums.finish(n, ws.component_stats + 2 * (num * a + c));
}

}  // namespace kvcap::device::detail
