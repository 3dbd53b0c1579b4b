#pragma once
// kvcap/core/layer_view.hpp — one layer's cache as the engine attends over it.
//
// Keys and values in the layer's layout, one metadata record per (head, slot), and the
// number of resident tokens. Slots [0, length) are valid for every head; slot `tok` of
// different heads may hold different original tokens (heads select independently).
// With per-head lengths (layouts::varlen under a head-adaptive budget) head h holds
// head_lengths[h] tokens and `length` is the largest of them: read length_of(head).

#include "../layouts/concept.hpp"
#include "config.hpp"
#include "token_meta.hpp"
#include "vector_math.hpp"

namespace kvcap {

template <class T, layout Layout>
struct layer_view {
  using mapping_type = typename Layout::mapping;

  T* k = nullptr;             ///< (mapping.required_span_size())
  T* v = nullptr;             ///< (mapping.required_span_size())
  token_meta* meta = nullptr; ///< (head, capacity), or packed like K and V (see meta_slot)
  mapping_type mapping{};
  index_t length = 0;
  const index_t* head_lengths = nullptr;  ///< (head) when heads hold different counts

  KVCAP_HOST_DEVICE constexpr index_t capacity() const { return mapping.capacity; }
  KVCAP_HOST_DEVICE constexpr index_t length_of(index_t head) const {
    return head_lengths != nullptr ? head_lengths[head] : length;
  }
  KVCAP_HOST_DEVICE vector_ref<T> key(index_t tok, index_t head) const {
    return {k + mapping(tok, head), mapping.head_dim};
  }
  KVCAP_HOST_DEVICE vector_ref<T> value(index_t tok, index_t head) const {
    return {v + mapping(tok, head), mapping.head_dim};
  }
  KVCAP_HOST_DEVICE token_meta& meta_at(index_t tok, index_t head) const {
    if constexpr (requires { mapping.meta_slot(tok, head); }) return meta[mapping.meta_slot(tok, head)];
    else return meta[head * mapping.capacity + tok];
  }
};

}  // namespace kvcap
