#pragma once
// tools/fidelity/metrics.hpp — how close a compressed cache's attention stays to the full
// cache's, for probe queries placed after the prompt.
//
// For each probe query and query head (GQA: kv-head = q_head / group):
//   relative error  ||o_kept − o_full|| / ||o_full||, pooled over probes and heads as
//                   sqrt(Σ||o_kept − o_full||² / Σ||o_full||²);
//   mass recall     Σ over kept tokens of the full attention probability (1 = nothing that
//                   mattered was dropped), averaged;
//   top-k overlap   share of the full attention's k most-attended tokens that were kept,
//                   averaged.
// A merged slot counts as the token it was kept as; with `size_bias` its logit gains
// log(size), the correction an engine applies for merged tokens.

#include <Eigen/Core>
#include <kvcap/core/layer_view.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace kvcap_tools {

struct fidelity {
  double sq_err = 0, sq_ref = 0, recall = 0, topk = 0;
  kvcap::index_t samples = 0;
  double relative_error() const { return sq_ref > 0 ? std::sqrt(sq_err / sq_ref) : 0; }
  double mass_recall() const { return samples ? recall / samples : 0; }
  double topk_overlap() const { return samples ? topk / samples : 0; }
};

/// Softmax attention of `q` (dim) over rows of `keys` (n, dim) with optional logit bias.
inline Eigen::VectorXf attention_probs(const Eigen::Ref<const Eigen::MatrixXf>& keys, const Eigen::VectorXf& q,
                                       const Eigen::VectorXf* bias = nullptr) {
  Eigen::VectorXf s = keys * q / std::sqrt(static_cast<float>(q.size()));
  if (bias) s += *bias;
  s = (s.array() - s.maxCoeff()).exp();
  return s / s.sum();
}

/// Adds one layer's probes to `f`. full_k/full_v: (kv_head) of (N, dim) uncompressed;
/// probes: (probe, q_head) of dim; `view` the compressed layer.
template <class T, kvcap::layout Layout>
void accumulate_fidelity(fidelity& f, const std::vector<Eigen::MatrixXf>& full_k,
                         const std::vector<Eigen::MatrixXf>& full_v, const std::vector<std::vector<Eigen::VectorXf>>& probes,
                         const kvcap::layer_view<T, Layout>& view, bool size_bias, kvcap::index_t top_k) {
  const kvcap::index_t kv_heads = static_cast<kvcap::index_t>(full_k.size()), dim = full_k[0].cols();
  const kvcap::index_t n = full_k[0].rows();
  for (const auto& probe : probes) {
    const kvcap::index_t q_heads = static_cast<kvcap::index_t>(probe.size()), group = q_heads / kv_heads;
    for (kvcap::index_t qh = 0; qh < q_heads; ++qh) {
      const kvcap::index_t h = qh / group, len = view.length_of(h);  // heads may hold different counts
      const Eigen::VectorXf p_full = attention_probs(full_k[h], probe[qh]);
      const Eigen::VectorXf o_full = full_v[h].transpose() * p_full;

      Eigen::MatrixXf kk(len, dim), vv(len, dim);
      Eigen::VectorXf bias(len);
      std::vector<char> kept(static_cast<std::size_t>(n), 0);
      for (kvcap::index_t t = 0; t < len; ++t) {
        const auto k = view.key(t, h), v = view.value(t, h);
        for (kvcap::index_t i = 0; i < dim; ++i) kk(t, i) = k[i], vv(t, i) = v[i];
        const auto& m = view.meta_at(t, h);
        bias(t) = size_bias ? std::log(static_cast<float>(m.size)) : 0.f;
        kept[static_cast<std::size_t>(m.index)] = 1;
      }
      const Eigen::VectorXf p_kept = attention_probs(kk, probe[qh], &bias);
      const Eigen::VectorXf o_kept = vv.transpose() * p_kept;
      f.sq_err += (o_kept - o_full).squaredNorm();
      f.sq_ref += o_full.squaredNorm();

      double mass = 0;
      for (kvcap::index_t t = 0; t < n; ++t)
        if (kept[t]) mass += p_full(t);
      std::vector<kvcap::index_t> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      const kvcap::index_t k = std::min(top_k, n);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](kvcap::index_t a, kvcap::index_t b) { return p_full(a) > p_full(b); });
      double hit = 0;
      for (kvcap::index_t i = 0; i < k; ++i) hit += kept[order[i]];
      f.recall += mass;
      f.topk += hit / static_cast<double>(k);
      ++f.samples;
    }
  }
}

}  // namespace kvcap_tools
