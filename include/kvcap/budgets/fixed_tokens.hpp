#pragma once
// kvcap/budgets/fixed_tokens.hpp — the same token budget M for every layer (the paper's
// setting; a uniform budget beat a dynamic per-layer one there, 80.31 vs 74.68).

#include "concept.hpp"

namespace kvcap::budgets {

struct fixed_tokens {
  index_t tokens = 0;
  constexpr index_t tokens_for(index_t /*layer*/, const cache_shape& /*shape*/) const {
    return tokens;
  }
};
static_assert(budget<fixed_tokens>);

}  // namespace kvcap::budgets
