#pragma once
// kvcap/core/layer_view.hpp — one layer's cache as the engine attends over it.
//
// Keys and values in the layer's layout, one metadata record per (head, slot), and the
// number of resident tokens. Slots [0, length) are valid for every head; slot `tok` of
// different heads may hold different original tokens (heads select independently).

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
  token_meta* meta = nullptr; ///< (head, capacity)
  mapping_type mapping{};
  index_t length = 0;

  KVCAP_HOST_DEVICE constexpr index_t capacity() const { return mapping.capacity; }
  KVCAP_HOST_DEVICE vector_ref<T> key(index_t tok, index_t head) const {
    return {k + mapping(tok, head), mapping.head_dim};
  }
  KVCAP_HOST_DEVICE vector_ref<T> value(index_t tok, index_t head) const {
    return {v + mapping(tok, head), mapping.head_dim};
  }
  KVCAP_HOST_DEVICE token_meta& meta_at(index_t tok, index_t head) const {
    return meta[head * mapping.capacity + tok];
  }
};

}  // namespace kvcap
