#pragma once
// kvcap/scorers/spatial_redundancy.hpp — drop what the neighbouring patches already show.
//
// The score is −(mean cosine of k with the keys of its resident 4-neighbours in the same
// frame or image): a patch of flat sky or wall, like its neighbours, scores close to −1 and
// goes first; an edge or a face scores high. With no resident neighbour the score is 0.

#include "temporal_redundancy.hpp"

namespace kvcap::scorers {

struct spatial_redundancy {
  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    constexpr grid_offset steps[4] = {{0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
    float sum = 0.f;
    int found = 0;
    index_t n = 0;
    for (const grid_offset& d : steps)
      if (ctx.neighbour(tok, d, n)) sum += cosine(ctx.key(tok), ctx.key(n)), ++found;
    return found > 0 ? -sum / static_cast<float>(found) : 0.f;
  }
};
static_assert(scorer<spatial_redundancy>);

}  // namespace kvcap::scorers
