#pragma once
// kvcap/scorers/pooled_value_norm.hpp — value norm averaged over a spatial window
// (InfiniPot-V's value-norm ranking, VaN, pooled over the patch grid).
//
// The score is the mean |v| over the resident tokens of the (2r+1)×(2r+1) window of grid
// neighbours around the token, itself included: regions whose values move the attention
// output most are kept together rather than as isolated pixels.

#include "concept.hpp"

namespace kvcap::scorers {

struct pooled_value_norm {
  index_t radius = 1;

  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    float sum = 0.f;
    int found = 0;
    index_t n = 0;
    for (index_t dh = -radius; dh <= radius; ++dh)
      for (index_t dw = -radius; dw <= radius; ++dw) {
        const bool self = dh == 0 && dw == 0;
        if (self) n = tok;
        if (self || ctx.neighbour(tok, grid_offset{0, dh, dw}, n)) sum += norm(ctx.value(n)), ++found;
      }
    return sum / static_cast<float>(found);
  }
};
static_assert(scorer<pooled_value_norm>);

}  // namespace kvcap::scorers
