#pragma once
// kvcap/scorers/temporal_redundancy.hpp — drop what the previous frame already showed
// (InfiniPot-V's temporal redundancy, TaR).
//
// For a video token, the reference is the same patch (row, col) in the nearest earlier
// frame, looking back at most `max_lookback` frames, whose token is still resident in this
// head. The score is −cos(k, k_ref): a patch that barely changed scores close to −1 and goes
// first. When no such token is resident (first frame, text and image tokens, or every
// earlier copy of the patch already evicted) the score is 0, as for an orthogonal
// reference: the token counts as neither redundant nor especially novel.

#include "concept.hpp"

namespace kvcap::scorers {

struct temporal_redundancy {
  index_t max_lookback = 1;

  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    index_t ref = 0;
    for (index_t back = 1; back <= max_lookback; ++back)
      if (ctx.neighbour(tok, grid_offset{-back, 0, 0}, ref)) return -cosine(ctx.key(tok), ctx.key(ref));
    return 0.f;
  }
};
static_assert(scorer<temporal_redundancy>);

}  // namespace kvcap::scorers
