#pragma once
// kvcap/device/counting_resource.cuh — device memory that counts what passes through it.
//
// A thin wrapper around cudaMalloc / cudaFree that tracks current and peak bytes and the
// number of allocations, so that the peak of cache + workspace on the device can be checked
// against the formula exactly (the device twin of host::counting_resource). Errors come back
// as cudaError_t, never as exceptions. Not thread-safe: give each thread its own.

#include <cuda_runtime_api.h>

#include <cstddef>

namespace kvcap::device {

class counting_resource {
 public:
  counting_resource() = default;
  counting_resource(const counting_resource&) = delete;
  counting_resource& operator=(const counting_resource&) = delete;

  /// Allocates `bytes` (at least 256-byte aligned); on failure *ptr is nullptr and nothing is counted.
  [[nodiscard]] cudaError_t allocate(void** ptr, std::size_t bytes) {
    *ptr = nullptr;
    const cudaError_t e = cudaMalloc(ptr, bytes);
    if (e != cudaSuccess) {
      *ptr = nullptr;
      return e;
    }
    current_ += bytes;
    if (current_ > peak_) peak_ = current_;
    ++allocations_;
    return cudaSuccess;
  }
  template <class T>
  [[nodiscard]] cudaError_t allocate(T** ptr, std::size_t count) {
    void* p = nullptr;
    const cudaError_t e = allocate(&p, count * sizeof(T));
    *ptr = static_cast<T*>(p);
    return e;
  }
  /// Frees `ptr`, which `allocate` returned for `bytes` (elements: the same count as given).
  cudaError_t deallocate(void* ptr, std::size_t bytes) {
    if (ptr == nullptr) return cudaSuccess;
    current_ -= bytes;
    return cudaFree(ptr);
  }
  template <class T>
  cudaError_t deallocate(T* ptr, std::size_t count) {
    return deallocate(static_cast<void*>(ptr), count * sizeof(T));
  }

  std::size_t current_bytes() const noexcept { return current_; }
  std::size_t peak_bytes() const noexcept { return peak_; }
  std::size_t allocations() const noexcept { return allocations_; }
  void reset_peak() noexcept { peak_ = current_; }

 private:
  std::size_t current_ = 0, peak_ = 0, allocations_ = 0;
};

}  // namespace kvcap::device
