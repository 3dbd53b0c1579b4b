#pragma once
// kvcap/core/config.hpp — index type and the host/device function annotation.

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define KVCAP_HOST_DEVICE __host__ __device__
#else
#define KVCAP_HOST_DEVICE
#endif

namespace kvcap {

/// Signed index for tokens, heads, dims and element offsets. Signed so that differences
/// never wrap; 64-bit so that layer-sized offsets (tokens × heads × dims) never overflow.
using index_t = std::int64_t;

}  // namespace kvcap
