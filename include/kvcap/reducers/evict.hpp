#pragma once
// kvcap/reducers/evict.hpp — drop the tokens that do not fit (the paper's reducer).

#include "concept.hpp"

namespace kvcap::reducers {

struct evict {
  static constexpr bool merges = false;
  template <class Context>
  KVCAP_HOST_DEVICE constexpr void reduce(Context&) const {}
};
static_assert(reducer<evict>);

}  // namespace kvcap::reducers
