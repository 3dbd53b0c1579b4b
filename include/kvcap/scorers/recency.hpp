#pragma once
// kvcap/scorers/recency.hpp — keep the most recent tokens plus attention sinks
// (StreamingLLM).
//
// The first `num_sinks` tokens of the prompt (logical index < num_sinks) score +inf; every
// other token scores its logical index, so newer tokens are kept first. Scores are floats:
// indices are exact up to 2^24 (16.7 M tokens).

#include <math.h>

#include "concept.hpp"

namespace kvcap::scorers {

struct recency {
  index_t num_sinks = 4;

  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    const auto index = ctx.meta(tok).index;
    return index < num_sinks ? HUGE_VALF : static_cast<float>(index);
  }
};
static_assert(scorer<recency>);

}  // namespace kvcap::scorers
