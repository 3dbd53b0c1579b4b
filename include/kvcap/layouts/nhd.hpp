#pragma once
// kvcap/layouts/nhd.hpp — token-major contiguous layout, shape (capacity, heads, dim).

#include "../core/config.hpp"
#include "concept.hpp"
#include "kv_layout.hpp"

namespace kvcap::layouts {

struct nhd {
  static constexpr kv_layout kind = kv_layout::nhd;

  struct mapping {
    index_t capacity = 0, num_heads = 0, head_dim = 0;
    /// Offset of element 0 of (tok, head); the dim elements follow contiguously.
    KVCAP_HOST_DEVICE constexpr index_t operator()(index_t tok, index_t head) const {
      return (tok * num_heads + head) * head_dim;
    }
    /// Distance between consecutive tokens of one head.
    KVCAP_HOST_DEVICE constexpr index_t token_stride() const { return num_heads * head_dim; }
    KVCAP_HOST_DEVICE constexpr index_t required_span_size() const {
      return capacity * num_heads * head_dim;
    }
  };
};

static_assert(layout<nhd>);

}  // namespace kvcap::layouts
