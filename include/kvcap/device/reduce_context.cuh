#pragma once
// kvcap/device/reduce_context.cuh — the reduce context of one active (view, head) segment,
// as the device's reduce kernel (and the host reference of the device algorithm) hands it
// to a reducer: the archetype API of reducers/concept.hpp over a layer view of any layout,
// with the segment's own length, and "kept" read from the segment's rank keys and radix
// selection. Keys, values and metadata are the engine's, written in place (a merge folds
// into kept slots before they are compacted). Plain C++ with host/device annotations.

#include <cstdint>

#include "../core/layer_view.hpp"
#include "../core/slot_lookup.hpp"
#include "../structures/concept.hpp"
#include "rank_bits.cuh"

namespace kvcap::device {

template <class T, layout Layout, structure Structure>
struct segment_reduce_context {
  const layer_view<T, Layout>* view;
  const Structure* structure;
  index_t head_, length_;
  const std::uint64_t* keys_;  // (tok) rank keys of the segment
  selection selection_;

  KVCAP_HOST_DEVICE index_t num_tokens() const { return length_; }
  KVCAP_HOST_DEVICE index_t head_dim() const { return view->mapping.head_dim; }
  KVCAP_HOST_DEVICE bool is_kept(index_t tok) const { return selection_.keeps(keys_[tok]); }
  KVCAP_HOST_DEVICE vector_ref<T> key(index_t tok) const { return {view->k + view->mapping(tok, head_), head_dim()}; }
  KVCAP_HOST_DEVICE vector_ref<T> value(index_t tok) const { return {view->v + view->mapping(tok, head_), head_dim()}; }
  KVCAP_HOST_DEVICE token_meta& meta(index_t tok) const { return view->meta_at(tok, head_); }
  KVCAP_HOST_DEVICE bool neighbour(index_t tok, grid_offset d, index_t& slot) const {
    return neighbour_slot(*view, *structure, head_, length_, tok, d, slot);
  }
};

/// A reducer that a group of threads can run together (reducers::merge); any other reducer
/// runs on one thread per segment.
template <class Reducer, class Context, class Group>
concept group_reducer = requires(const Reducer r, Context& ctx, const Group& g) { r.reduce(ctx, g); };

}  // namespace kvcap::device
