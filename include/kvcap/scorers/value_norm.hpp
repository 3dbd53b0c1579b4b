#pragma once
// kvcap/scorers/value_norm.hpp — keep high-norm values.
//
// A token's contribution to an attention output is its weight times its value; a value with
// a large norm moves the output most when dropped (the value-norm signal InfiniPot-V uses).
// The score is |v|.

#include "concept.hpp"

namespace kvcap::scorers {

struct value_norm {
  static constexpr score_inputs inputs{};
  template <class Context>
  KVCAP_HOST_DEVICE auto score(const Context& ctx, index_t tok) const {
    return norm(ctx.value(tok));
  }
};
static_assert(scorer<value_norm>);

}  // namespace kvcap::scorers
