#pragma once
// kvcap/reducers/concept.hpp — what a reducer must offer.
//
// Once the kept set of a (layer, head) is chosen, the reducer decides what happens to the
// tokens that did not make it, before the executor compacts the kept ones to the front
// (stable, ascending, metadata alongside). Evict does nothing; a merging reducer folds a
// dropped token into a kept one through the context's `key`/`value`/`meta` accessors.

#include <concepts>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/token_meta.hpp"
#include "../core/vector_math.hpp"
#include "../structures/concept.hpp"

namespace kvcap {

namespace archetypes {
/// The reduce context's documented API. Declared, never defined.
struct reduce_context {
  index_t num_tokens() const;  ///< resident tokens of this head before compaction
  index_t head_dim() const;
  bool is_kept(index_t tok) const;
  vector_ref<float> key(index_t tok) const;    ///< writable: a merge folds into kept tokens
  vector_ref<float> value(index_t tok) const;
  token_meta& meta(index_t tok) const;
  /// The resident slot of the token `d` away from `tok` in the structure model.
  bool neighbour(index_t tok, grid_offset d, index_t& slot) const;
};
}  // namespace archetypes

template <class R>
concept reducer = std::is_trivially_copyable_v<R> &&
    requires(const R r, archetypes::reduce_context& ctx) {
      { R::merges } -> std::convertible_to<bool>;
      r.reduce(ctx);
    };

/// A reducer may promise more: that a dropped token's turn touches only a few kept slots,
/// named beforehand (`static constexpr bool local = true`, and):
///   struct bracket { index_t before, after; };   the nearest kept slots (-1, num_tokens(): none)
///   static int candidates(ctx, tok, bracket, index_t (&out)[max_candidates]);
///       every kept slot the turn of dropped token `tok` reads or writes (repeats allowed)
///   void reduce_token(ctx, tok, bracket) const;  that turn
/// and `reduce` is the turns in ascending slot order. Turns whose candidates are disjoint then
/// commute, so an executor may take them side by side and still equal `reduce` bit for bit.
template <class R, class Context>
concept local_reducer = reducer<R> && requires { requires R::local; } &&
    requires(const R r, Context& ctx, index_t tok, typename R::bracket near, index_t (&out)[R::max_candidates]) {
      { R::candidates(ctx, tok, near, out) } -> std::convertible_to<int>;
      r.reduce_token(ctx, tok, near);
    };

}  // namespace kvcap
