#pragma once
// tests/device/device_harness.cuh — device images of the harness's host images, the GPU
// test main's "is there a GPU" question, and CUDA checks for the GPU tests.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <cstdlib>

#include <kvcap/device.cuh>

#include "harness.hpp"

namespace kvcap_test {

/// True when no GPU can run the device tests (no driver, no device): they are then skipped.
inline bool no_gpu() {
  static const bool none = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) != cudaSuccess || count == 0;
  }();
  return none;
}

/// `cases` scaled by KVCAP_DEVICE_TEST_SCALE (a fraction; 1 when unset), at least 1: the
/// sanitizer runs (tools/device/device_checks.sh) take a sample of the randomized cases.
inline int scaled(int cases) {
  static const double scale = [] {
    const char* s = std::getenv("KVCAP_DEVICE_TEST_SCALE");
    return s != nullptr ? std::atof(s) : 1.0;
  }();
  const int n = static_cast<int>(cases * scale);
  return n > 0 ? n : 1;
}

#define KVCAP_TEST_CUDA(call)                                   \
  do {                                                          \
    const cudaError_t kvcap_test_error_ = (call);               \
    INFO(#call, ": ", cudaGetErrorString(kvcap_test_error_));   \
    REQUIRE(kvcap_test_error_ == cudaSuccess);                  \
  } while (0)

/// A host image's storage in device memory (allocated through a counting resource), and
/// the view over it with device pointers (block table and head indptr included).
template <class T, layout Layout>
struct device_image {
  device::counting_resource* mr = nullptr;
  T *k = nullptr, *v = nullptr;
  token_meta* meta = nullptr;
  std::int32_t* table = nullptr;
  index_t* indptr = nullptr;
  std::size_t elems = 0, v_elems = 0, metas = 0, tables = 0, indptrs = 0;  // v_elems 0: V lies in k (fused_kv)
  layer_view<T, Layout> view{};

  device_image(device::counting_resource& resource, const host_image<T, Layout>& h) : mr(&resource) {
    elems = h.k.size(), v_elems = h.v.size(), metas = h.meta.size(), tables = h.block_table.size(),
    indptrs = h.head_indptr.size();
    KVCAP_TEST_CUDA(mr->allocate(&k, elems));
    if (v_elems) KVCAP_TEST_CUDA(mr->allocate(&v, v_elems));
    KVCAP_TEST_CUDA(mr->allocate(&meta, metas));
    if (tables) KVCAP_TEST_CUDA(mr->allocate(&table, tables));
    if (indptrs) KVCAP_TEST_CUDA(mr->allocate(&indptr, indptrs));
    upload(h);
    view = h.view;
    view.k = k, view.meta = meta;
    view.v = v_elems ? v : k + (h.view.v - h.k.data());  // a fused layout's V: where it lies in the host's k
    if constexpr (requires { view.mapping.block_table; }) view.mapping.block_table = tables ? table : nullptr;
    if constexpr (requires { view.mapping.head_indptr; }) view.mapping.head_indptr = indptrs ? indptr : nullptr;
  }
  device_image(const device_image&) = delete;
  device_image& operator=(const device_image&) = delete;
  ~device_image() {
    (void)mr->deallocate(k, elems), (void)mr->deallocate(v, v_elems), (void)mr->deallocate(meta, metas);
    (void)mr->deallocate(table, tables), (void)mr->deallocate(indptr, indptrs);
  }

  void upload(const host_image<T, Layout>& h) {
    KVCAP_TEST_CUDA(cudaMemcpy(k, h.k.data(), elems * sizeof(T), cudaMemcpyHostToDevice));
    if (v_elems) KVCAP_TEST_CUDA(cudaMemcpy(v, h.v.data(), v_elems * sizeof(T), cudaMemcpyHostToDevice));
    KVCAP_TEST_CUDA(cudaMemcpy(meta, h.meta.data(), metas * sizeof(token_meta), cudaMemcpyHostToDevice));
    if (tables)
      KVCAP_TEST_CUDA(cudaMemcpy(table, h.block_table.data(), tables * sizeof(std::int32_t), cudaMemcpyHostToDevice));
    if (indptrs)
      KVCAP_TEST_CUDA(cudaMemcpy(indptr, h.head_indptr.data(), indptrs * sizeof(index_t), cudaMemcpyHostToDevice));
  }
  /// K, V and metadata back into `h` (whose arrangement must be the one uploaded).
  void download(host_image<T, Layout>& h) const {
    KVCAP_TEST_CUDA(cudaMemcpy(h.k.data(), k, elems * sizeof(T), cudaMemcpyDeviceToHost));
    if (v_elems) KVCAP_TEST_CUDA(cudaMemcpy(h.v.data(), v, v_elems * sizeof(T), cudaMemcpyDeviceToHost));
    KVCAP_TEST_CUDA(cudaMemcpy(h.meta.data(), meta, metas * sizeof(token_meta), cudaMemcpyDeviceToHost));
  }
};

/// A device workspace of `bytes` (freed at scope exit).
struct device_buffer {
  device::counting_resource* mr;
  void* data = nullptr;
  std::size_t bytes = 0;
  device_buffer(device::counting_resource& resource, std::size_t n) : mr(&resource), bytes(n) {
    KVCAP_TEST_CUDA(mr->allocate(&data, bytes > 0 ? bytes : 1));
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { (void)mr->deallocate(data, bytes > 0 ? bytes : 1); }
};

}  // namespace kvcap_test
