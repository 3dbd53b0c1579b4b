#pragma once
// kvcap/layouts/hnd.hpp — head-major contiguous layout, shape (heads, capacity, dim).

#include "../core/config.hpp"
#include "concept.hpp"
#include "kv_layout.hpp"

namespace kvcap::layouts {

struct hnd {
  static constexpr kv_layout kind = kv_layout::hnd;

  struct mapping {
    index_t capacity = 0, num_heads = 0, head_dim = 0;
    /// Offset of element 0 of (tok, head); the dim elements follow contiguously.
    KVCAP_HOST_DEVICE constexpr index_t operator()(index_t tok, index_t head) const {
      return (head * capacity + tok) * head_dim;
    }
    /// Distance between consecutive tokens of one head.
    KVCAP_HOST_DEVICE constexpr index_t token_stride() const { return head_dim; }
    KVCAP_HOST_DEVICE constexpr index_t required_span_size() const {
      return capacity * num_heads * head_dim;
    }
  };
};

static_assert(layout<hnd>);

}  // namespace kvcap::layouts
