#pragma once
// kvcap/layouts/varlen.hpp — per-head variable length: each kv-head owns a packed run of
// slots of its own size, so per-head budgets really free memory.
//
// Storage is (slots, dim): head h's slots are [head_indptr[h], head_indptr[h + 1]) and its
// token `tok` is slot head_indptr[h] + tok (the ragged "indptr" convention of FlashInfer,
// here over heads). `capacity` is the room of the largest head, and a head's room is
// head_indptr[h + 1] − head_indptr[h] ≤ capacity. Token metadata is (head, capacity) like
// every layout's, or, with `packed_meta`, packed like K and V (record head_indptr[h] + tok;
// layer_view::meta_at asks the mapping through meta_slot). Without head_indptr every head
// has room `capacity` and head h starts at h · capacity: the HND layout.
//
// Per-head lengths live outside the mapping: layer_view::head_lengths for the host executor,
// compress_batch::head_lengths for the device executor. head_indptr is read through the
// mapping: host memory for the host executor, device memory for the device executor.

#include "../core/config.hpp"
#include "concept.hpp"
#include "kv_layout.hpp"

namespace kvcap::layouts {

struct varlen {
  static constexpr kv_layout kind = kv_layout::hnd;  ///< a head's tokens are adjacent
  static constexpr bool is_always_strided = true;

  struct mapping {
    index_t capacity = 0, num_heads = 0, head_dim = 0;
    const index_t* head_indptr = nullptr;  ///< (num_heads + 1) first slot of each head; nullptr: h · capacity
    index_t num_slots = 0;                 ///< slots of the packed storage; 0: capacity · num_heads
    bool packed_meta = false;              ///< metadata packed like K and V instead of (head, capacity)

    KVCAP_HOST_DEVICE constexpr index_t head_begin(index_t head) const {
      return head_indptr != nullptr ? head_indptr[head] : head * capacity;
    }
    /// Tokens head `head` can hold.
    KVCAP_HOST_DEVICE constexpr index_t room(index_t head) const {
      return head_indptr != nullptr ? head_indptr[head + 1] - head_indptr[head] : capacity;
    }
    /// Offset of element 0 of (tok, head); the dim elements follow contiguously.
    KVCAP_HOST_DEVICE constexpr index_t operator()(index_t tok, index_t head) const {
      return (head_begin(head) + tok) * head_dim;
    }
    KVCAP_HOST_DEVICE constexpr index_t token_stride() const { return head_dim; }
    /// Index of (tok, head)'s metadata record.
    KVCAP_HOST_DEVICE constexpr index_t meta_slot(index_t tok, index_t head) const {
      return packed_meta ? head_begin(head) + tok : head * capacity + tok;
    }
    KVCAP_HOST_DEVICE constexpr index_t required_span_size() const {
      return (num_slots > 0 ? num_slots : capacity * num_heads) * head_dim;
    }
  };
};

static_assert(layout<varlen>);

}  // namespace kvcap::layouts
