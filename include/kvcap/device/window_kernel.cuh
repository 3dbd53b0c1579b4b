#pragma once
// kvcap/device/window_kernel.cuh — the observation window's attention mass of every token of
// every active segment (scorers::observation_window's shared input), in two passes over key
// tiles in shared memory, never materialising (rows, n):
//
//   window_stats_kernel  (segment, row block)  online softmax over the key tiles: each row's
//                        max and normaliser (a warp owns 1 to 4 rows, a lane one key of the tile)
//   window_mass_kernel   (segment, key tile)   each key's probability under every row, summed
//                        over the rows (a warp's rows in order, then the warps in order) and
//                        divided by the number of rows that see a key (all of them, but
//                        group · n in a head of n < w slots under a causal window), so a
//                        segment's masses sum to 1
//
// GQA: the rows of a kv-head are its window queries × the query heads of its group. The result
// equals the host executor's window mass to float rounding, not bit for bit (exp and the
// summation order differ from Eigen's), so a kept set can differ from the host's only between
// tokens whose scores tie to within that rounding. Both passes are deterministic.

#include "launch.cuh"
#include "score_kernel.cuh"
#include "staged_walk.cuh"
#include "window_tiles.cuh"

namespace kvcap::device::detail {

/// The max and the sum over a warp's lanes (every lane gets them).
__device__ inline float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
__device__ inline float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// The window's shape in segment `seg` of a call.
template <class T>
struct window_site {
  kv_tensor<const T> window;
  index_t group, rows;
};
template <class T, class Layout>
__device__ inline window_site<T> window_of(const workspace_layout<T, Layout>& ws, const plan_segment& seg) {
  const kv_tensor<const T> w = ws.windows[seg.view];
  const index_t group = w.num_heads / ws.views[seg.view].mapping.num_heads;
  return {w, group, w.num_tokens * group};
}

// Staging: a warp per row, its lanes along the row, so that each row's address is found once
// and no index is divided (64-bit division costs more than the copy). A thread loads every
// element it stages into registers before it stores any (window_rows_in_flight): up to 32
// loads in flight instead of one, since a store to shared memory that follows a load it may
// alias waits for that load. The stats kernel walks its key tiles with staged_walk, so the
// next tile's loads are in flight while the current one is used; the mass kernel walks its
// row blocks so.

/// The mass kernel runs as many blocks as there are key tiles: registers are held to what lets
/// 3 reside per SM (80, no spills with the loads in flight; the stats kernel, with a block per
/// 32 rows, is left its 110).
inline constexpr int window_mass_blocks_per_sm = 3;

/// A warp's rows of a staged block (rows warp, warp + window_warps, …: at most 4, as 32 keys
/// or ≤ 32 query rows over 8 warps) and a lane's elements of each (lane, lane + 32, …: at most
/// window_max_head_dim / 32), held in registers between their loads and their stores.
struct window_rows_in_flight {
  static constexpr int max_rows = 4, max_elements = static_cast<int>(window_max_head_dim / 32);
  float x[max_rows][max_elements];

  /// Loads rows [0, rows) of the block: `row_of(r)` is row r's first element (nullptr: a
  /// row of zeros), times `scale` when `scaled`.
  template <class RowOf>
  __device__ void fetch(int rows, int dim, RowOf&& row_of, bool scaled = false, float scale = 1.f) {
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
    for (int i = 0; i < max_rows; ++i) {
      const int r = warp + i * window_warps;
      if (r >= rows) break;  // warp-uniform
      const auto* row = row_of(r);
#pragma unroll
      for (int u = 0; u < max_elements; ++u)
        if (const int c = lane + 32 * u; c < dim) {
          const float v = row != nullptr ? static_cast<float>(row[c]) : 0.f;
          x[i][u] = scaled ? v * scale : v;
        }
    }
  }
  /// Stores them at out[r · pitch + c].
  __device__ void publish(float* out, int rows, int dim, int pitch) const {
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
    for (int i = 0; i < max_rows; ++i) {
      const int r = warp + i * window_warps;
      if (r >= rows) break;
#pragma unroll
      for (int u = 0; u < max_elements; ++u)
        if (const int c = lane + 32 * u; c < dim) out[r * pitch + c] = x[i][u];
    }
  }
};

/// Fetches rows [r0, r0 + block_rows) of the segment's window, scaled (zeros past the last row).
template <class T>
__device__ inline void fetch_queries(window_rows_in_flight& regs, const window_site<T>& site, index_t head, index_t r0,
                                     index_t block_rows, index_t dim) {
  regs.fetch(
      static_cast<int>(block_rows), static_cast<int>(dim),
      [&](int r) -> const T* {
        return r0 + r < site.rows ? window_query(site.window, head, site.group, r0 + r).data : nullptr;
      },
      true, window_scale(dim));
}

/// Fetches keys [t0, t0 + 32) of the segment (zeros past its length).
template <class T, class Layout>
__device__ inline void fetch_keys(window_rows_in_flight& regs, const layer_view<T, Layout>& view, index_t head,
                                  index_t t0, index_t n, index_t dim) {
  regs.fetch(static_cast<int>(window_key_tile), static_cast<int>(dim),
             [&](int t) -> const T* { return t0 + t < n ? view.k + view.mapping(t0 + t, head) : nullptr; });
}

/// Staged queries are rows of dim floats; staged keys rows of dim + 1 (see window_tiles.cuh).
__device__ inline void publish_queries(const window_rows_in_flight& regs, float* q, index_t block_rows, index_t dim) {
  regs.publish(q, static_cast<int>(block_rows), static_cast<int>(dim), static_cast<int>(dim));
}
__device__ inline void publish_keys(const window_rows_in_flight& regs, float* k, index_t dim) {
  regs.publish(k, static_cast<int>(window_key_tile), static_cast<int>(dim), static_cast<int>(dim + 1));
}

/// Row `r` of the staged queries against lane `lane`'s staged key, in index order.
__device__ inline float staged_logit(const float* q, const float* k, index_t r, int lane, index_t dim) {
  const int d = static_cast<int>(dim);
  const float* qr = q + static_cast<int>(r) * d;
  const float* kr = k + lane * (d + 1);
  float acc = 0.f;
  for (int c = 0; c < d; ++c) acc += qr[c] * kr[c];
  return acc;
}

template <class T, class Layout>
__global__ void __launch_bounds__(window_threads)
    window_stats_kernel(workspace_layout<T, Layout> ws, index_t row_blocks, index_t block_rows, index_t window_rows,
                        index_t dim, bool causal) {
  float* q = dynamic_shared<float>();  // (block_rows, dim)
  float* k = q + block_rows * dim;     // (32, dim + 1)
  const index_t a = blockIdx.x / row_blocks, r0 = (blockIdx.x % row_blocks) * block_rows;
  const plan_segment seg = ws.segments[a];
  const window_site<T> site = window_of(ws, seg);
  if (r0 >= site.rows) return;
  const layer_view<T, Layout> view = ws.views[seg.view];
  const index_t n = seg.length, rows_per_warp = block_rows / window_warps;
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  window_rows_in_flight regs;
  fetch_queries(regs, site, seg.head, r0, block_rows, dim);
  publish_queries(regs, q, block_rows, dim);  // visible after staged_walk's first barrier

  float row_max[4] = {-HUGE_VALF, -HUGE_VALF, -HUGE_VALF, -HUGE_VALF}, row_sum[4] = {0.f, 0.f, 0.f, 0.f};
  staged_walk(
      n, window_key_tile, [&](index_t t0) { fetch_keys(regs, view, seg.head, t0, n, dim); },
      [&](index_t) { publish_keys(regs, k, dim); },
      [&](index_t t0, index_t) {
        const index_t key = t0 + lane;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const index_t r = warp * rows_per_warp + j, row = r0 + r;
          if (j >= rows_per_warp || row >= site.rows) break;  // warp-uniform
          const bool visible = key < n && key < window_visible_end(n, site.window.num_tokens, site.group, row, causal);
          const float logit = visible ? staged_logit(q, k, r, lane, dim) : -HUGE_VALF;
          const float m = fmaxf(row_max[j], warp_max(logit));
          if (m == -HUGE_VALF) continue;  // nothing visible yet
          row_sum[j] = row_sum[j] * expf(row_max[j] - m) + warp_sum(expf(logit - m));
          row_max[j] = m;
        }
      });
  if (lane != 0) return;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const index_t row = r0 + warp * rows_per_warp + j;
    if (j >= rows_per_warp || row >= site.rows) break;
    float* stats = ws.window_stats + 2 * (a * window_rows + row);
    stats[0] = row_max[j], stats[1] = row_sum[j];
  }
}

template <class T, class Layout>
__global__ void __launch_bounds__(window_threads, window_mass_blocks_per_sm)
    window_mass_kernel(workspace_layout<T, Layout> ws, index_t block_rows, index_t window_rows, index_t dim, bool causal) {
  float* q = dynamic_shared<float>();  // (block_rows, dim)
  float* k = q + block_rows * dim;     // (32, dim + 1)
  __shared__ float partial[window_warps][window_key_tile];  // 1 KiB: see window_smem_limit
  const index_t a = blockIdx.x, t0 = blockIdx.y * window_key_tile;
  const plan_segment seg = ws.segments[a];
  const index_t n = seg.length;
  if (t0 >= n) return;
  const window_site<T> site = window_of(ws, seg);
  const index_t rows_per_warp = block_rows / window_warps;
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  window_rows_in_flight regs;
  fetch_keys(regs, ws.views[seg.view], seg.head, t0, n, dim);
  publish_keys(regs, k, dim);  // visible after staged_walk's first barrier
  const index_t key = t0 + lane;
  float acc = 0.f;
  staged_walk(
      site.rows, block_rows, [&](index_t r0) { fetch_queries(regs, site, seg.head, r0, block_rows, dim); },
      [&](index_t) { publish_queries(regs, q, block_rows, dim); },
      [&](index_t r0, index_t) {
        for (index_t j = 0; j < rows_per_warp; ++j) {
          const index_t r = warp * rows_per_warp + j, row = r0 + r;
          if (row >= site.rows) break;
          if (key >= n || key >= window_visible_end(n, site.window.num_tokens, site.group, row, causal)) continue;
          const float* stats = ws.window_stats + 2 * (a * window_rows + row);
          acc += expf(staged_logit(q, k, r, lane, dim) - stats[0]) / stats[1];
        }
      });
  partial[warp][lane] = acc;
  __syncthreads();
  if (warp != 0 || key >= n) return;
  float mass = 0.f;
  for (int w = 0; w < window_warps; ++w) mass += partial[w][lane];
  const index_t seeing = window_seeing_rows(n, site.window.num_tokens, site.group, causal);
  ws.window_mass[ws.token_indptr[a] + key] = mass * (1.f / static_cast<float>(seeing));
}

}  // namespace kvcap::device::detail
