#pragma once
// kvcap/host/reference_attention.hpp — a plain attention over a layer view, for examples,
// tests and as the yardstick of benchmarks. Engines bring their own; kvcap never needs it.
//
// Queries q (tokens, q_heads, dim) that sit at the end of the cache (the chunk just
// appended: query i is at slot length - n + i) attend causally over slots [0, length):
// resident tokens are all earlier than the chunk, chunk tokens see themselves and the
// ones before them. With `causal = false` every query sees every slot (probe queries after
// the prefix). GQA: query head h reads kv-head h / (q_heads / kv_heads).
// `scratch` is resized to (tokens, length) floats; pass a host::attention_scratch
// (row-major, so each query's softmax reads contiguous memory: about 2x faster than a
// column-major Eigen::MatrixXf, which also works). `out` is (tokens, q_heads, dim) in NHD.

#include <Eigen/Core>
#include <cmath>

#include "eigen_views.hpp"

namespace kvcap::host {

/// Scratch for reference_attention: (tokens, length), row-major.
using attention_scratch = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T, layout Layout, class Scratch = attention_scratch>
void reference_attention(const layer_view<T, Layout>& view, const kv_tensor<const T>& q, bool causal,
                         Scratch& scratch, float* out) {
  const index_t n = q.num_tokens, d = q.head_dim;
  const index_t group = q.num_heads / view.mapping.num_heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  for (index_t qh = 0; qh < q.num_heads; ++qh) {
    const index_t kvh = qh / group, len = view.length_of(kvh);
    scratch.resize(n, len);
    const auto keys = head_rows(view, kvh, false);
    const auto values = head_rows(view, kvh, true);
    const auto queries = head_rows(q, qh);
    scratch.noalias() = queries.template cast<float>() * keys.template cast<float>().transpose();
    scratch *= scale;
    for (index_t i = 0; i < n; ++i) {
      const index_t visible = causal ? len - n + i + 1 : len;
      auto row = scratch.row(i);
      const float m = row.head(visible).maxCoeff();
      row.head(visible) = (row.head(visible).array() - m).exp();
      row.tail(len - visible).setZero();
      row /= row.sum();
    }
    // out for this head is (tok, dim) with row stride q_heads · dim.
    Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
               Eigen::OuterStride<>>
        o_rows(out + qh * d, n, d, Eigen::OuterStride<>(q.num_heads * d));
    o_rows.noalias() = scratch * values.template cast<float>();
  }
}

}  // namespace kvcap::host
