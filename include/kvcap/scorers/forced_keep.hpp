#pragma once
// kvcap/scorers/forced_keep.hpp — keep sinks and a recent window whatever the scorer says.
//
// The union of {the first `num_sinks` tokens of the prompt}, {the `num_recent` newest
// tokens} and the base scorer's choice: forced tokens score +inf, the rest score as the
// base scorer (single or composite) does. Protected tokens need no wrapper: the executor
// always keeps them.

#include <math.h>

#include "concept.hpp"

namespace kvcap::scorers {

template <any_scorer Base>
struct forced_keep {
  Base base{};
  index_t num_sinks = 0;
  index_t num_recent = 0;

  static constexpr score_inputs inputs = Base::inputs;

  template <class Context>
  KVCAP_HOST_DEVICE bool forced(const Context& ctx, index_t tok) const {
    const auto index = ctx.meta(tok).index;
    return index < num_sinks || index >= ctx.next_index() - num_recent;
  }
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const
    requires scorer<Base>
  {
    return forced(ctx, tok) ? HUGE_VALF : base.score(ctx, tok);
  }

  // Composite protocol, present when the base is composite.
  static constexpr index_t num_components = num_components_v<Base>;
  template <class Context>
  KVCAP_HOST_DEVICE auto component(const Context& ctx, index_t tok, index_t c) const
    requires composite_scorer<Base>
  {
    return base.component(ctx, tok, c);
  }
  template <class Context>
  KVCAP_HOST_DEVICE auto combine(const Context& ctx, index_t tok, const float* z) const
    requires composite_scorer<Base>
  {
    return forced(ctx, tok) ? HUGE_VALF : base.combine(ctx, tok, z);
  }
};

}  // namespace kvcap::scorers
