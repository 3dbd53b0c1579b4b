#pragma once
// kvcap/budgets/head_adaptive.hpp — heads share a layer's budget by score (AdaKV-style).
//
// A layer keeps `tokens` per kv-head on average: num_kv_heads · tokens in total. Every head
// first keeps its best min(resident, floor) tokens, floor = ⌊tokens · min_head_fraction⌋;
// the rest of the total goes to the best remaining tokens across all heads, compared by
// (protected, score, logical index, head). Heads whose tokens matter more keep more.
// Scores are compared across heads as they are: pair it with a scorer whose scale means
// the same in every head (cosines: key_diff, temporal/spatial redundancy; window mass).
//
// Memory is really freed only with a per-head variable-length layout (layouts::varlen),
// whose heads are packed back to back with `max_chunk` of room each after every compress:
// the layer's storage is num_kv_heads · (tokens + max_chunk) slots, the same as a uniform
// budget, and no head's unused room is hidden behind a mask. One head may then hold up to
// num_kv_heads · (tokens − floor) + floor + max_chunk tokens; the host executor sizes a
// head's scoring scratch for that (compressor::head_capacity).

#include "concept.hpp"

namespace kvcap::budgets {

struct head_adaptive {
  index_t tokens = 0;               ///< per kv-head on average
  double min_head_fraction = 0.25;  ///< each head keeps at least this share of `tokens`, in [0, 1]

  static constexpr bool adapts_heads = true;
  constexpr index_t tokens_for(index_t /*layer*/, const cache_shape& /*shape*/) const { return tokens; }
  /// What every head keeps at least when its layer is compressed to `layer_tokens` per head
  /// on average (`tokens` after each chunk; less for a post-prefill compress_to): that many
  /// times the fraction, rounded down, so the oracle applies the same policy at its target.
  constexpr index_t head_floor(index_t layer_tokens) const {
    return static_cast<index_t>(static_cast<double>(layer_tokens) * min_head_fraction);
  }
};
static_assert(budget<head_adaptive>);

}  // namespace kvcap::budgets

namespace kvcap {
/// Budgets that share a layer's total among its heads.
template <class B>
concept head_adaptive_budget = budget<B> && B::adapts_heads && requires(const B b) {
  { b.head_floor(index_t{}) } -> std::same_as<index_t>;
};
}  // namespace kvcap
