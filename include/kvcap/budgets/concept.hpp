#pragma once
// kvcap/budgets/concept.hpp — what a budget controller must offer.
//
// A budget controller answers one question: how many tokens may layer `layer` hold after
// a compress. Executors size each layer's capacity as that budget plus the declared
// maximum chunk, and check after every call that the invariant holds.

#include <concepts>
#include <type_traits>

#include "../core/config.hpp"

namespace kvcap {

/// What a budget controller may use to turn its setting into tokens.
struct cache_shape {
  index_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  index_t element_bytes = 0;  ///< bytes of one stored K or V element
  /// Bytes of K plus V for one token of one layer.
  constexpr index_t kv_bytes_per_token() const { return 2 * num_kv_heads * head_dim * element_bytes; }
};

template <class B>
concept budget = std::is_trivially_copyable_v<B> &&
    requires(const B b, index_t layer, const cache_shape& shape) {
      { b.tokens_for(layer, shape) } -> std::same_as<index_t>;
    };

}  // namespace kvcap
