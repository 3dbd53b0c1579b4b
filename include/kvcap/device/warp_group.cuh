#pragma once
// kvcap/device/warp_group.cuh — a full warp as a thread group (core/thread_group.hpp): the
// device side of policies written once for host and device.
//
// stage() copies the rows into `scratch` (shared memory the kernel gives each warp): every
// lane issues up to stage_batch 16-byte loads before it stores any, so the rows arrive in one
// round trip, and every lane then reads them from shared memory. The loads go through L2
// (__ldcg), which sees what this warp wrote before (a merge's folds). Rows that do not fit,
// or whose length or start is not a multiple of 16 bytes, stay where they are: the same
// elements either way, so staging changes speed, never results.

#include <cstdint>
#include <cstring>

#include "../core/thread_group.hpp"

namespace kvcap::device {

struct warp_group {
  void* scratch = nullptr;      ///< 16-byte aligned shared memory of this warp alone
  std::size_t scratch_bytes = 0;

  static constexpr int stage_batch = 8;  ///< 16-byte loads a lane has in flight while staging

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
  __device__ std::uint32_t ballot(bool p) const { return __ballot_sync(0xffffffffu, p); }

  template <class E>
  __device__ void stage(vector_ref<const E>* rows, int count) const {
    if (count <= 0) return;
    const auto row_bytes = static_cast<std::size_t>(rows[0].size) * sizeof(E);
    if (row_bytes == 0 || row_bytes % 16 != 0 || static_cast<std::size_t>(count) * row_bytes > scratch_bytes) return;
    for (int r = 0; r < count; ++r)
      if (reinterpret_cast<std::uintptr_t>(rows[r].data) % 16 != 0) return;
    const int vecs = static_cast<int>(row_bytes / 16), total = count * vecs;
    auto* out = static_cast<uint4*>(scratch);
    __syncwarp();  // every lane has finished reading the rows staged before
    for (int i0 = rank(); i0 < total; i0 += stage_batch * 32) {
      uint4 x[stage_batch];
#pragma unroll
      for (int u = 0; u < stage_batch; ++u)
        if (const int i = i0 + u * 32; i < total) x[u] = __ldcg(reinterpret_cast<const uint4*>(rows[i / vecs].data) + i % vecs);
#pragma unroll
      for (int u = 0; u < stage_batch; ++u)
        if (const int i = i0 + u * 32; i < total) out[i] = x[u];
    }
    __syncwarp();
    for (int r = 0; r < count; ++r) rows[r].data = reinterpret_cast<const E*>(out + r * vecs);
  }
};

}  // namespace kvcap::device
