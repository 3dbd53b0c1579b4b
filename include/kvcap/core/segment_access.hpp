#pragma once
// kvcap/core/segment_access.hpp — one head of one layer's cache as a policy sees it: slots
// [0, length) of a layer view of any layout, and the structure model that names each token's
// neighbours (found by binary search over the head's ascending logical indices,
// core/slot_lookup.hpp). The common base of every executor's score and reduce contexts, host
// and device, so that a policy reads the cache the same way everywhere. Plain C++ with
// host/device annotations.

#include "layer_view.hpp"
#include "slot_lookup.hpp"
#include "../structures/concept.hpp"

namespace kvcap {

template <class T, layout Layout, structure Structure>
struct segment_access {
  const layer_view<T, Layout>* view;
  const Structure* structure;
  index_t head_, length_;  ///< length_: the head's resident slots (view->length_of(head))

  KVCAP_HOST_DEVICE index_t num_tokens() const { return length_; }
  KVCAP_HOST_DEVICE index_t head() const { return head_; }
  KVCAP_HOST_DEVICE index_t head_dim() const { return view->mapping.head_dim; }
  KVCAP_HOST_DEVICE vector_ref<T> key(index_t tok) const { return view->key(tok, head_); }
  KVCAP_HOST_DEVICE vector_ref<T> value(index_t tok) const { return view->value(tok, head_); }
  KVCAP_HOST_DEVICE token_meta& meta(index_t tok) const { return view->meta_at(tok, head_); }
  KVCAP_HOST_DEVICE bool neighbour(index_t tok, grid_offset d, index_t& slot) const {
    return neighbour_slot(*view, *structure, head_, length_, tok, d, slot);
  }
};

}  // namespace kvcap
