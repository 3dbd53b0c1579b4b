#pragma once
// kvcap/budgets/fixed_bytes.hpp — a budget in bytes of K and V per layer.
//
// The token budget is the largest count whose keys and values fit:
//   floor(bytes_per_layer / (2 · kv_heads · head_dim · element_bytes)).
// Token metadata and workspace are not part of this figure; they appear in the peak formula.

#include "concept.hpp"

namespace kvcap::budgets {

struct fixed_bytes {
  index_t bytes_per_layer = 0;
  constexpr index_t tokens_for(index_t /*layer*/, const cache_shape& shape) const {
    const index_t per_token = shape.kv_bytes_per_token();
    return per_token > 0 ? bytes_per_layer / per_token : 0;
  }
};
static_assert(budget<fixed_bytes>);

}  // namespace kvcap::budgets
