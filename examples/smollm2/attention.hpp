// attention.hpp — the engine's attention over one layer's resident cache.
//
// The cache is any kvcap::layer_view (the engine's own full cache and kvcap's compressed one
// are both HND views), so one kernel serves both runs and their logits can be compared
// exactly. Causality is decided by LOGICAL positions, not slots: a query at position p sees
// every resident key whose token_meta::index <= p. After compression the resident keys are
// a sparse, still ascending subset of the prefix, and their rotary phases were applied
// when they were computed; nothing is re-rotated.
//
// A slot that stands for several merged tokens (token_meta::size > 1, reducers::merge) gets
// a log(size) bias on its logit, so that it draws the attention mass of the tokens it
// replaced (proportional attention, as in ToMe).
#pragma once

#include <kvcap/host/eigen_views.hpp>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace smollm2 {

/// Scratch for attend(): one (queries × keys) score block, sized at construction.
struct attention_scratch {
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> scores;
  std::vector<float> bias;             // log(size) per resident slot of the head
  std::vector<std::int64_t> position;  // logical index per resident slot of the head

  attention_scratch(kvcap::index_t max_queries, kvcap::index_t max_keys)
      : scores(max_queries, max_keys), bias(static_cast<std::size_t>(max_keys)),
        position(static_cast<std::size_t>(max_keys)) {}
};

/// out (T, q_heads, dim) = softmax(q kᵀ / √dim + bias, causal by position) v, for queries q
/// (T, q_heads, dim) at logical positions q_pos (ascending). GQA: q-head h reads kv-head
/// h / (q_heads / kv_heads).
template <class Layout>
void attend(const kvcap::layer_view<float, Layout>& view, const float* q, kvcap::index_t tokens,
            kvcap::index_t q_heads, const std::int64_t* q_pos, attention_scratch& scratch, float* out) {
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using strided = Eigen::Map<row_major, Eigen::Unaligned, Eigen::OuterStride<>>;
  using const_strided = Eigen::Map<const row_major, Eigen::Unaligned, Eigen::OuterStride<>>;
  const kvcap::index_t dim = view.mapping.head_dim, kv_heads = view.mapping.num_heads;
  const kvcap::index_t group = q_heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));

  for (kvcap::index_t kvh = 0; kvh < kv_heads; ++kvh) {
    const kvcap::index_t len = view.length_of(kvh);
    bool merged = false;
    for (kvcap::index_t s = 0; s < len; ++s) {
      const kvcap::token_meta& m = view.meta_at(s, kvh);
      scratch.position[s] = m.index;
      scratch.bias[s] = m.size > 1 ? std::log(static_cast<float>(m.size)) : 0.0f;
      merged |= m.size > 1;
    }
    const auto keys = kvcap::host::head_rows(view, kvh, false);
    const auto values = kvcap::host::head_rows(view, kvh, true);
    auto scores = scratch.scores.topLeftCorner(tokens, len);
    for (kvcap::index_t qh = kvh * group; qh < (kvh + 1) * group; ++qh) {
      const const_strided queries(q + qh * dim, tokens, dim, Eigen::OuterStride<>(q_heads * dim));
      scores.noalias() = (queries * scale) * keys.transpose();
      kvcap::index_t visible = 0;  // keys with position <= q_pos[i]; q_pos ascends, so it only grows
      for (kvcap::index_t i = 0; i < tokens; ++i) {
        while (visible < len && scratch.position[visible] <= q_pos[i]) ++visible;
        auto row = scores.row(i);
        if (merged) row.head(visible) += Eigen::Map<const Eigen::RowVectorXf>(scratch.bias.data(), visible);
        const float top = row.head(visible).maxCoeff();
        row.head(visible) = (row.head(visible).array() - top).exp();
        row.head(visible) /= row.head(visible).sum();
        row.tail(len - visible).setZero();
      }
      strided(out + qh * dim, tokens, dim, Eigen::OuterStride<>(q_heads * dim)).noalias() = scores * values;
    }
  }
}

}  // namespace smollm2
