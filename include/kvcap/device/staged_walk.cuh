#pragma once
// kvcap/device/staged_walk.cuh — a block's walk over tiles staged in shared memory, with the
// next tile's loads in flight while the current tile is worked on.
//
// A kernel that reads a long run tile by tile through shared memory waits, at every tile, for
// the loads of that tile, unless it issued them earlier: staged_walk fetches tile i + 1 into
// registers right after tile i is published, before tile i is used, so the loads of one wait
// behind the work of the other instead of in front of it. Used by the ordered sums
// (ordered_sums.cuh) and the window mass (window_kernel.cuh).

#include "../core/config.hpp"

namespace kvcap::device::detail {

/// Items [0, n) a tile at a time: `fetch(base)` issues this thread's loads of the tile at
/// `base` into its registers, `publish(base)` stores them to shared memory, and
/// `use(base, count)` works on the published tile. Every thread of the block must call it.
template <class Fetch, class Publish, class Use>
__device__ inline void staged_walk(index_t n, index_t tile, Fetch&& fetch, Publish&& publish, Use&& use) {
  if (n > 0) fetch(index_t{0});
  for (index_t base = 0; base < n; base += tile) {
    __syncthreads();  // the previous tile is no longer used
    publish(base);
    __syncthreads();
    if (base + tile < n) fetch(base + tile);
    use(base, n - base < tile ? n - base : tile);
  }
}

}  // namespace kvcap::device::detail
