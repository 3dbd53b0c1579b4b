#pragma once
// kvcap/device/segment_access.cuh — one active (view, head) segment of a device call, as the
// device's score and reduce contexts (and the host reference of the device algorithm) read
// it: slots [0, length) of one head of a layer view of any layout, with the segment's own
// length (per-head lengths included), and its structure neighbours found as the host
// executor finds them (core/slot_lookup.hpp). The device twin of host::head_access. Plain C++
// with host/device annotations.

#include "../core/layer_view.hpp"
#include "../core/slot_lookup.hpp"
#include "../structures/concept.hpp"

namespace kvcap::device {

template <class T, layout Layout, structure Structure>
struct segment_access {
  const layer_view<T, Layout>* view;
  const Structure* structure;
  index_t head_, length_;

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

}  // namespace kvcap::device
