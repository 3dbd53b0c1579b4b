#pragma once
// kvcap/device/window_tiles.cuh — the geometry of the device's observation-window mass (the
// shared input of scorers::observation_window), shared by its kernels and its host reference.
//
// Rows are (window query j, GQA member g) pairs, row = j · group + g, reading query head
// head · group + g of the window, pre-scaled by 1/√dim (as the host executor does). Which
// slots a row sees, and how many rows a mass averages, are core/window_rows.hpp's. A block
// stages `block_rows` rows and a tile of 32 keys in shared memory (keys padded to dim + 1
// floats so that lanes reading different keys hit different banks), within the 48 KiB a
// block may use without opting in (head_dim ≤ 256). Plain C++ with host/device annotations.

#include <math.h>

#include <cstddef>

#include "../core/config.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/window_rows.hpp"

namespace kvcap::device {

inline constexpr index_t window_key_tile = 32;   ///< keys per tile: one per lane
inline constexpr int window_threads = 256;        ///< 8 warps share a block's rows
inline constexpr int window_warps = window_threads / 32;
inline constexpr index_t window_max_head_dim = 256;
/// Most tokens of a segment a window scorer takes: key tiles run along the grid's y (≤ 65535).
inline constexpr index_t window_max_length = 65535 * window_key_tile;

/// Shared memory of a window block: `rows` staged queries and one key tile, in floats.
constexpr std::size_t window_smem_bytes(index_t rows, index_t head_dim) {
  return static_cast<std::size_t>(rows * head_dim + window_key_tile * (head_dim + 1)) * sizeof(float);
}

/// Dynamic shared memory a window block may stage in: 48 KiB (no opt-in needed) less the
/// mass kernel's 1 KiB of per-warp partial sums.
inline constexpr std::size_t window_smem_limit = 47 * 1024;

/// Rows one block stages (32, 16 or 8: every warp owns 4, 2 or 1), or 0 when not even 8 fit.
constexpr index_t window_block_rows(index_t head_dim) {
  for (index_t rows = 32; rows >= 8; rows /= 2)
    if (head_dim <= window_max_head_dim && window_smem_bytes(rows, head_dim) <= window_smem_limit) return rows;
  return 0;
}

/// The query of row `row` of kv-head `head`.
template <class T>
KVCAP_HOST_DEVICE vector_ref<const T> window_query(const kv_tensor<const T>& window, index_t head, index_t group,
                                                   index_t row) {
  return window(row / group, head * group + row % group);
}

/// 1/√dim, as the host executor scales its window queries.
KVCAP_HOST_DEVICE inline float window_scale(index_t head_dim) { return 1.f / sqrtf(static_cast<float>(head_dim)); }

}  // namespace kvcap::device
