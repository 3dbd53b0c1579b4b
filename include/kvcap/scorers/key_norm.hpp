#pragma once
// kvcap/scorers/key_norm.hpp — keep low-norm keys (kvpress' KnormPress).
//
// Keys with a small L2 norm draw the most attention (Devoto et al., 2024), so the score is
// −|k|: the lowest-norm keys are kept.

#include "concept.hpp"

namespace kvcap::scorers {

struct key_norm {
  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    return -norm(ctx.key(tok));
  }
};
static_assert(scorer<key_norm>);

}  // namespace kvcap::scorers
