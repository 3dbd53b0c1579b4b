#pragma once
// kvcap/scorers/observation_window.hpp — the attention a window of queries pays each
// token (SnapKV; the paper's query-aware scorer).
//
// The executor computes, once per (layer, kv-head), the window mass of every resident
// token: the softmax attention of each window query (the last w queries of the chunk, or
// a proxy such as the question) over all resident keys, summed over the queries of the
// head's GQA group and over the window, in key tiles, never materialising w×N. The score
// is that mass averaged over the slots [tok − pool_radius, tok + pool_radius] (SnapKV's
// 1-D pooling keeps neighbours of a hit together); pool_radius 0 scores the raw mass.

#include "concept.hpp"

namespace kvcap::scorers {

struct observation_window {
  index_t pool_radius = 3;

  static constexpr score_inputs inputs{.window_mass = true};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    const index_t lo = tok - pool_radius < 0 ? 0 : tok - pool_radius;
    const index_t hi = tok + pool_radius >= ctx.num_tokens() ? ctx.num_tokens() - 1 : tok + pool_radius;
    float sum = 0.f;
    for (index_t i = lo; i <= hi; ++i) sum += ctx.window_mass(i);
    return sum / static_cast<float>(hi - lo + 1);
  }
};
static_assert(scorer<observation_window>);

}  // namespace kvcap::scorers
