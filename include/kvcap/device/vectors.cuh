#pragma once
// kvcap/device/vectors.cuh — the vector a kernel moves rows in: VecBytes bytes (16, 8, 4, 2
// or 1; compressor.cuh picks the widest that divides every K and V row start) as one load.

#include <cuda_runtime_api.h>

namespace kvcap::device::detail {

template <int Bytes>
struct vector_of;
template <> struct vector_of<16> { using type = uint4; };
template <> struct vector_of<8> { using type = uint2; };
template <> struct vector_of<4> { using type = unsigned int; };
template <> struct vector_of<2> { using type = unsigned short; };
template <> struct vector_of<1> { using type = unsigned char; };

}  // namespace kvcap::device::detail
