#pragma once
// kvcap/host/window_mass.hpp — the observation-window attention mass of every resident
// token of one kv-head, in key tiles (the shared input of scorers::observation_window).
//
// rows = window queries × GQA group. Pass 1 runs an online softmax over key tiles to get
// each row's max and normaliser; pass 2 recomputes each tile's logits and adds each
// row's probabilities into mass[tok], divided by the number of rows that see a key (so
// the masses sum to 1). The only buffers are (rows, dim), (tile, dim) and (rows, tile)
// floats plus (tok) for the result, all fixed at construction: never (rows, N), never (N, N).
// Which slots a row sees (a causal window is the chunk's own last queries), and over how
// many rows the masses average (a head shorter than the window has queries before its
// first slot, which add nothing), are core/window_rows.hpp's, shared with the device.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../core/window_rows.hpp"

namespace kvcap::host {

struct window_mass_workspace {
  static constexpr index_t key_tile = 256;

  float* queries = nullptr;  // (rows, dim), pre-scaled by 1/sqrt(dim)
  float* keys = nullptr;     // (key_tile, dim)
  float* logits = nullptr;   // (rows, key_tile)
  float* row_max = nullptr;  // (rows)
  float* row_sum = nullptr;  // (rows)
  float* mass = nullptr;     // (tok)
  index_t max_rows = 0;

  template <class Carver>
  static window_mass_workspace carve(Carver& w, index_t max_rows, index_t dim, index_t max_capacity) {
    window_mass_workspace ws;
    ws.max_rows = max_rows;
    ws.queries = w.template take<float>(max_rows, dim);
    ws.keys = w.template take<float>(key_tile, dim);
    ws.logits = w.template take<float>(max_rows, key_tile);
    ws.row_max = w.template take<float>(max_rows);
    ws.row_sum = w.template take<float>(max_rows);
    ws.mass = w.template take<float>(max_capacity);
    return ws;
  }
};

template <class T, layout Layout>
void window_mass(const layer_view<T, Layout>& view, index_t head, const kv_tensor<const T>& window, bool causal,
                 const window_mass_workspace& ws) {
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n = view.length_of(head), d = view.mapping.head_dim, w = window.num_tokens;
  const index_t group = window.num_heads / view.mapping.num_heads, rows = w * group;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  if (n == 0) return;
  // Rows [0, blind) see no key of this head (causal, n < w).
  const index_t blind = rows - window_seeing_rows(n, w, group, causal);

  Eigen::Map<row_major> q(ws.queries, rows, d);
  for (index_t j = 0; j < w; ++j)
    for (index_t g = 0; g < group; ++g) {
      const auto src = window(j, head * group + g);
      for (index_t i = 0; i < d; ++i) q(j * group + g, i) = src[i] * scale;
    }
  const auto visible_end = [&](index_t r) { return window_visible_end(n, w, group, r, causal); };

  // Logits of key tile [t0, t0 + len) into ws.logits, masked entries at -inf.
  const auto tile_logits = [&](index_t t0, index_t len) {
    Eigen::Map<row_major> k(ws.keys, len, d);
    for (index_t t = 0; t < len; ++t) {
      const auto src = view.key(t0 + t, head);
      for (index_t i = 0; i < d; ++i) k(t, i) = src[i];
    }
    Eigen::Map<row_major> s(ws.logits, rows, len);
    s.noalias() = q.lazyProduct(k.transpose());
    for (index_t r = 0; r < rows; ++r)
      for (index_t t = std::max<index_t>(0, visible_end(r) - t0); t < len; ++t)
        s(r, t) = -std::numeric_limits<float>::infinity();
    return s;
  };

  std::fill_n(ws.row_max, rows, -std::numeric_limits<float>::infinity());
  std::fill_n(ws.row_sum, rows, 0.f);
  for (index_t t0 = 0; t0 < n; t0 += window_mass_workspace::key_tile) {
    const index_t len = std::min(window_mass_workspace::key_tile, n - t0);
    const auto s = tile_logits(t0, len);
    for (index_t r = 0; r < rows; ++r) {
      const float m = std::max(ws.row_max[r], s.row(r).maxCoeff());
      if (m == -std::numeric_limits<float>::infinity()) continue;
      ws.row_sum[r] = ws.row_sum[r] * std::exp(ws.row_max[r] - m) + (s.row(r).array() - m).exp().sum();
      ws.row_max[r] = m;
    }
  }
  std::fill_n(ws.mass, n, 0.f);
  const float inv_rows = 1.f / static_cast<float>(window_seeing_rows(n, w, group, causal));
  for (index_t t0 = 0; t0 < n; t0 += window_mass_workspace::key_tile) {
    const index_t len = std::min(window_mass_workspace::key_tile, n - t0);
    auto s = tile_logits(t0, len);
    s.topRows(blind).setZero();
    for (index_t r = blind; r < rows; ++r)
      s.row(r) = ((s.row(r).array() - ws.row_max[r]).exp() / ws.row_sum[r]).matrix();
    Eigen::Map<Eigen::RowVectorXf> mass(ws.mass + t0, len);
    mass.noalias() += inv_rows * s.colwise().sum();
  }
}

}  // namespace kvcap::host
