#pragma once
// kvcap/core/kv_tensor.hpp — a non-owning (tokens, heads, dim) tensor in NHD or HND order.
//
// This is how an engine hands a chunk's keys or values to kvcap: its own buffer, its own
// order. The tensor's order is independent of the cache's layout.

#include "../layouts/kv_layout.hpp"
#include "config.hpp"
#include "vector_math.hpp"

namespace kvcap {

template <class T>
struct kv_tensor {
  T* data = nullptr;
  index_t num_tokens = 0, num_heads = 0, head_dim = 0;
  kv_layout order = kv_layout::nhd;

  KVCAP_HOST_DEVICE constexpr index_t offset(index_t tok, index_t head) const {
    return order == kv_layout::nhd ? (tok * num_heads + head) * head_dim
                                   : (head * num_tokens + tok) * head_dim;
  }
  KVCAP_HOST_DEVICE vector_ref<T> operator()(index_t tok, index_t head) const {
    return {data + offset(tok, head), head_dim};
  }
  KVCAP_HOST_DEVICE constexpr index_t size() const { return num_tokens * num_heads * head_dim; }
};

}  // namespace kvcap
