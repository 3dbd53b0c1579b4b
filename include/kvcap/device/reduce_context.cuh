#pragma once
// kvcap/device/reduce_context.cuh — the reduce context of one active (view, head) segment,
// as the device's reduce kernel (and the host reference of the device algorithm) hands it
// to a reducer: the archetype API of reducers/concept.hpp over a layer view of any layout,
// with the segment's own length, and "kept" read from the segment's rank keys and radix
// selection. Keys, values and metadata are the engine's, written in place (a merge folds
// into kept slots before they are compacted). Plain C++ with host/device annotations.

#include <cstdint>

#include "../core/segment_access.hpp"
#include "rank_bits.cuh"

namespace kvcap::device {

template <class T, layout Layout, structure Structure>
struct segment_reduce_context : segment_access<T, Layout, Structure> {
  const std::uint64_t* keys_;  // (tok) rank keys of the segment
  selection selection_;

  KVCAP_HOST_DEVICE bool is_kept(index_t tok) const { return selection_.keeps(keys_[tok]); }
};

/// A reducer that a group of threads can run together (reducers::merge); any other reducer
/// runs on one thread per segment.
template <class Reducer, class Context, class Group>
concept group_reducer = requires(const Reducer r, Context& ctx, const Group& g) { r.reduce(ctx, g); };

}  // namespace kvcap::device
