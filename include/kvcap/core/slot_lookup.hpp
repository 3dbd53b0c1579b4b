#pragma once
// kvcap/core/slot_lookup.hpp — where a token of a head lives in the cache, by logical index
// or as the structure neighbour of another resident token. Shared by every executor's
// score and reduce contexts, on host and device.

#include <cstdint>

#include "../structures/concept.hpp"
#include "layer_view.hpp"

namespace kvcap {

/// Slot of the resident token of `head` with logical index `index`, among its first
/// `length` slots. Resident tokens are in ascending index order (compaction is stable), so
/// a binary search finds it; false if it is not resident.
template <class T, layout Layout>
KVCAP_HOST_DEVICE bool find_slot(const layer_view<T, Layout>& view, index_t head, index_t length, std::int64_t index,
                                 index_t& slot) {
  index_t lo = 0, hi = length;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (view.meta_at(mid, head).index < index) lo = mid + 1;
    else hi = mid;
  }
  if (lo == length || view.meta_at(lo, head).index != index) return false;
  slot = lo;
  return true;
}

/// Slot of the token `d` away from slot `tok` in the structure model; false if that token
/// lies outside the grid or is not resident in this head.
template <class T, layout Layout, structure Structure>
KVCAP_HOST_DEVICE bool neighbour_slot(const layer_view<T, Layout>& view, const Structure& s, index_t head,
                                      index_t length, index_t tok, grid_offset d, index_t& slot) {
  index_t index = 0;
  return s.neighbour(view.meta_at(tok, head).index, d, index) && find_slot(view, head, length, index, slot);
}

}  // namespace kvcap
