// tests/device/simt/runtime.cpp — the CUDA runtime calls kvcap and its device tests make, for
// the SIMT emulator (simt.hpp): "device" memory is host memory, every stream is the host
// thread, and every call has completed when it returns. Linked instead of libcudart.

#include "simt.hpp"

#include <map>
#include <new>

namespace {
/// Live allocations and their sizes, for cudaMemGetInfo (the tests check nothing leaks).
std::map<void*, std::size_t>& allocations() {
  static std::map<void*, std::size_t> live;
  return live;
}
std::size_t allocated_bytes = 0;
constexpr std::size_t emulated_memory = std::size_t{16} << 30;
int next_stream = 0;
}  // namespace

cudaError_t cudaMalloc(void** ptr, size_t size) {
  *ptr = nullptr;
  if (size > emulated_memory - allocated_bytes) return cudaErrorMemoryAllocation;
  // Exactly `size` bytes (256-aligned, as cudaMalloc's), so AddressSanitizer sees any overrun.
  void* p = ::operator new(size, std::align_val_t{256}, std::nothrow);
  if (p == nullptr) return cudaErrorMemoryAllocation;
  std::memset(p, 0xa5, size);  // uninitialised, as a GPU's memory is
  allocations()[p] = size, allocated_bytes += size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  const auto it = allocations().find(ptr);
  if (it == allocations().end()) return cudaErrorInvalidValue;
  allocated_bytes -= it->second;
  allocations().erase(it);
  ::operator delete(ptr, std::align_val_t{256});
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *free = emulated_memory - allocated_bytes, *total = emulated_memory;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind) {
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (count > 0) std::memset(ptr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) { return cudaMemset(ptr, value, count); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(++next_stream) * 16);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaError (SIMT emulator)"; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "error (SIMT emulator)"; }

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  if (value > 227 * 1024) return cudaErrorInvalidValue;  // an H100's most a block may opt in to
  kvcap::simt::opted_in_shared()[kernel] = value;
  return cudaSuccess;
}
