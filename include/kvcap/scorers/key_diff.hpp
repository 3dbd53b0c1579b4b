#pragma once
// kvcap/scorers/key_diff.hpp — keep keys far from the mean key direction (KeyDiff; the
// query-agnostic scorer of Kim & Bae).
//
// With a = mean over resident tokens of k / |k| (the anchor), the score is
// −cos(k, a) = −k·a / (|k| |a|): the more a key points away from the common direction,
// the more it is worth keeping. A zero key or zero anchor has cosine 0.

#include "concept.hpp"

namespace kvcap::scorers {

struct key_diff {
  static constexpr score_inputs inputs{.mean_unit_key = true};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    return -cosine(ctx.key(tok), ctx.mean_unit_key());
  }
};
static_assert(scorer<key_diff>);

}  // namespace kvcap::scorers
