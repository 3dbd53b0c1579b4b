#pragma once
// kvcap/device/launch.cuh — how kvcap's kernels are launched and reach their dynamic shared
// memory: the two places where a kernel's source meets the CUDA compiler's extensions.
//
// Compiled by nvcc these are the triple-chevron launch and an `extern __shared__` array.
// Compiled by a host compiler together with a SIMT emulator (tests/device/simt/simt.hpp, which
// defines KVCAP_SIMT_EMULATOR), the same kernels run on the CPU, so that machines without a
// GPU (CI) still execute the kernels' source: their barriers, warp collectives and index
// arithmetic, not their speed or the GPU's memory model.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#if !defined(__CUDACC__) && !defined(KVCAP_SIMT_EMULATOR)
#error "kvcap's kernels compile with nvcc, or with a host compiler and tests/device/simt/simt.hpp"
#endif

namespace kvcap::device::detail {

/// Runs `kernel(args...)` on `grid` × `block` threads with `smem` bytes of dynamic shared
/// memory, on `stream`.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, Args&&... args) {
#if defined(__CUDACC__)
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#else
  ::kvcap::simt::launch(kernel, grid, block, smem, stream, std::forward<Args>(args)...);
#endif
}

/// The block's dynamic shared memory (16-byte aligned), as an array of T.
template <class T>
__device__ inline T* dynamic_shared() {
#if defined(__CUDACC__)
  extern __shared__ uint4 kvcap_dynamic_shared_[];
  return reinterpret_cast<T*>(kvcap_dynamic_shared_);
#else
  return static_cast<T*>(::kvcap::simt::dynamic_shared());
#endif
}

}  // namespace kvcap::device::detail
