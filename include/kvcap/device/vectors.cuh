#pragma once
// kvcap/device/vectors.cuh — the vector a kernel moves rows in: VecBytes bytes (16, 8, 4, 2
// or 1; compressor.cuh picks the widest that divides every K and V row start) as one load,
// and the dispatch from that run-time width to a kernel instantiated for it.

#include <cuda_runtime_api.h>

namespace kvcap::device::detail {

template <int Bytes>
struct vector_of;
template <> struct vector_of<16> { using type = uint4; };
template <> struct vector_of<8> { using type = uint2; };
template <> struct vector_of<4> { using type = unsigned int; };
template <> struct vector_of<2> { using type = unsigned short; };
template <> struct vector_of<1> { using type = unsigned char; };

/// Calls `f.template operator()<Bytes>()` with Bytes = `bytes` (16, 8, 4 or 2; 1 for any
/// other value) as a constant: one kernel instantiation per vector width.
template <class F>
decltype(auto) with_vector_bytes(int bytes, F&& f) {
  switch (bytes) {
    case 16: return f.template operator()<16>();
    case 8: return f.template operator()<8>();
    case 4: return f.template operator()<4>();
    case 2: return f.template operator()<2>();
    default: return f.template operator()<1>();
  }
}

}  // namespace kvcap::device::detail
