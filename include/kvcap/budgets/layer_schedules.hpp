#pragma once
// kvcap/budgets/layer_schedules.hpp — a total token budget shared out over the layers.
//
//   uniform_layers  total / L each (the first total % L layers get one more)
//   pyramid_layers  linearly decreasing from the first layer to the last, the last holding
//                   `last_to_first` times the first (PyramidKV's shape); sums to the total
//   explicit_layers one count per layer from the caller's list
//
// Shares are cut from a cumulative curve C(l) and rounded as floor(C(l+1)) − floor(C(l)),
// so every schedule sums to its total exactly.

#include <span>

#include "concept.hpp"

namespace kvcap::budgets {

struct uniform_layers {
  index_t total_tokens = 0;
  constexpr index_t tokens_for(index_t layer, const cache_shape& s) const {
    const index_t base = total_tokens / s.num_layers, extra = total_tokens % s.num_layers;
    return base + (layer < extra ? 1 : 0);
  }
};
static_assert(budget<uniform_layers>);

struct pyramid_layers {
  index_t total_tokens = 0;
  double last_to_first = 0.25;  ///< budget of the last layer over that of the first (0 < r ≤ 1)

  /// Tokens given to layers [0, l): the integral of the linear profile, scaled to the total.
  constexpr double cumulative(index_t l, index_t num_layers) const {
    if (num_layers == 1) return static_cast<double>(total_tokens) * static_cast<double>(l);
    const double r = last_to_first, L = static_cast<double>(num_layers), x = static_cast<double>(l);
    // weight(i) = 1 − (1 − r)·i/(L − 1); sum over i < l; normalised by the sum over all L.
    const auto partial = [&](double n) { return n - (1.0 - r) * n * (n - 1.0) / (2.0 * (L - 1.0)); };
    return static_cast<double>(total_tokens) * partial(x) / partial(L);
  }
  constexpr index_t tokens_for(index_t layer, const cache_shape& s) const {
    const auto floor_at = [&](index_t l) { return static_cast<index_t>(cumulative(l, s.num_layers) + 1e-9); };
    return floor_at(layer + 1) - floor_at(layer);
  }
};
static_assert(budget<pyramid_layers>);

struct explicit_layers {
  std::span<const index_t> tokens;  ///< (layer); must hold num_layers entries
  constexpr index_t tokens_for(index_t layer, const cache_shape&) const {
    return layer < static_cast<index_t>(tokens.size()) ? tokens[layer] : 0;
  }
};
static_assert(budget<explicit_layers>);

/// One byte budget for K and V of all layers together, shared uniformly.
struct total_bytes {
  index_t bytes = 0;
  constexpr index_t tokens_for(index_t /*layer*/, const cache_shape& s) const {
    const index_t per_token = s.num_layers * s.kv_bytes_per_token();
    return per_token > 0 ? bytes / per_token : 0;
  }
};
static_assert(budget<total_bytes>);

}  // namespace kvcap::budgets
