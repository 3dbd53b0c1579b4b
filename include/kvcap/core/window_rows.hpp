#pragma once
// kvcap/core/window_rows.hpp — which keys an observation window's rows see, shared by the
// host's window mass (host/window_mass.hpp) and the device's (device/window_kernel.cuh and
// its reference), so both average over the same rows.
//
// Rows are (window query j, GQA member g) pairs, row = j · group + g. A causal window is the
// chunk's own last w queries: in a segment (a kv-head) of n slots, query j sits at slot
// n − w + j and sees slots < n − w + j + 1. A head shorter than the window (per-head
// lengths) has queries before its first slot: they see none of its keys and add nothing,
// so its masses are averaged over the group · min(w, n) rows that see one. A window that is
// not the chunk's tail (a proxy question) sees every slot.

#include "config.hpp"

namespace kvcap {

/// One past the last slot row `row` sees, in a segment of `n` slots (≤ 0: none).
KVCAP_HOST_DEVICE constexpr index_t window_visible_end(index_t n, index_t window_tokens, index_t group, index_t row,
                                                       bool causal) {
  return causal ? n - window_tokens + row / group + 1 : n;
}

/// The rows that see at least one slot of a segment of `n` ≥ 1 slots: the masses' divisor.
KVCAP_HOST_DEVICE constexpr index_t window_seeing_rows(index_t n, index_t window_tokens, index_t group, bool causal) {
  return group * (causal && n < window_tokens ? n : window_tokens);
}

static_assert(window_seeing_rows(4, 5, 2, true) == 8 && window_seeing_rows(4, 5, 2, false) == 10 &&
              window_seeing_rows(6, 5, 2, true) == 10);
static_assert(window_visible_end(4, 5, 1, 0, true) == 0 && window_visible_end(4, 5, 1, 1, true) == 1);

}  // namespace kvcap
