#pragma once
// kvcap/core/slot_lookup.hpp — where a token of a head lives in the cache, by logical index
// or as the structure neighbour of another resident token. Shared by every executor's
// score and reduce contexts, on host and device.

#include <cstdint>

#include "../structures/concept.hpp"
#include "layer_view.hpp"

namespace kvcap {

/// Slot of the resident token of `head` with logical index `index`, among slots [lo, hi)
/// (a binary search: resident tokens are in ascending index order, compaction is stable);
/// false if it is not there.
template <class T, layout Layout>
KVCAP_HOST_DEVICE bool find_slot_between(const layer_view<T, Layout>& view, index_t head, index_t lo, index_t hi,
                                         std::int64_t index, index_t& slot) {
  const index_t end = hi;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (view.meta_at(mid, head).index < index) lo = mid + 1;
    else hi = mid;
  }
  if (lo == end || view.meta_at(lo, head).index != index) return false;
  slot = lo;
  return true;
}

/// Slot of the resident token of `head` with logical index `index`, among its first
/// `length` slots; false if it is not resident.
template <class T, layout Layout>
KVCAP_HOST_DEVICE bool find_slot(const layer_view<T, Layout>& view, index_t head, index_t length, std::int64_t index,
                                 index_t& slot) {
  return find_slot_between(view, head, 0, length, index, slot);
}

/// Slot of the token `d` away from slot `tok` in the structure model; false if that token
/// lies outside the grid or is not resident in this head. Logical indices strictly increase
/// along the slots (both executors check it), so a token `gap` indices after `tok` lies
/// within `gap` slots after it, and one before it within as many slots before: the search
/// covers only those (one probe for a sequence's left or right neighbour, not log2(length)).
template <class T, layout Layout, structure Structure>
KVCAP_HOST_DEVICE bool neighbour_slot(const layer_view<T, Layout>& view, const Structure& s, index_t head,
                                      index_t length, index_t tok, grid_offset d, index_t& slot) {
  const std::int64_t from = view.meta_at(tok, head).index;
  index_t index = 0;
  if (!s.neighbour(from, d, index)) return false;
  const std::int64_t gap = index - from;
  if (gap > 0)
    return find_slot_between(view, head, tok + 1, gap < length - tok ? tok + 1 + static_cast<index_t>(gap) : length,
                             index, slot);
  if (gap < 0)
    return find_slot_between(view, head, -gap < tok ? tok + static_cast<index_t>(gap) : 0, tok, index, slot);
  slot = tok;
  return true;
}

}  // namespace kvcap
