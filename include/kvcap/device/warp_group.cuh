#pragma once
// kvcap/device/warp_group.cuh — a full warp as a thread group (core/thread_group.hpp): the
// device side of policies written once for host and device.

#include <cstring>

#include "../core/thread_group.hpp"

namespace kvcap::device {

struct warp_group {
  __device__ int rank() const { return static_cast<int>(threadIdx.x % 32); }
  __device__ constexpr int size() const { return 32; }
  __device__ void sync() const { __syncwarp(); }
  /// `v` of the lane rank() ^ mask, for any trivially copyable V (moved as 32-bit words).
  template <class V>
  __device__ V shuffle_xor(V v, int mask) const {
    constexpr int words = static_cast<int>((sizeof(V) + 3) / 4);
    unsigned int w[words] = {};
    std::memcpy(w, &v, sizeof(V));
    for (int i = 0; i < words; ++i) w[i] = __shfl_xor_sync(0xffffffffu, w[i], mask);
    std::memcpy(&v, w, sizeof(V));
    return v;
  }
};

}  // namespace kvcap::device
