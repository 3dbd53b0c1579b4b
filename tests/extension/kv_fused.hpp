#pragma once
// tests/extension/kv_fused.hpp — a cache layout written outside kvcap, the way a user writes
// one: this header and its tests are all it takes, with no edit in include/kvcap. Both
// executors run it: the host compressor over an engine's buffers (tests/test_extension.cpp)
// and the device kernels (tests/device/test_device_parity.cu, on a GPU and on the CPU
// emulator).
//
// One buffer per layer holds K and V together: token t's row is [K of every head | V of every
// head], rows one after another (token-major, as NHD). The view's k points at the buffer and
// its v `heads · dim` elements further on (values_of); both step a whole row, 2 · heads · dim
// elements, from one token to the next. No (tok, head) element of K is one of V, so the
// in-place compaction moves each as it would in two buffers.
//
// Use it with the non-owning constructor (host) or over the engine's memory (device): an
// owning host compressor would allocate K and V apart, each with the other's half unused.

#include <kvcap/layouts/concept.hpp>

namespace user {

struct kv_fused {
  static constexpr kvcap::kv_layout kind = kvcap::kv_layout::nhd;  // a token's heads are adjacent

  struct mapping {
    kvcap::index_t capacity = 0, num_heads = 0, head_dim = 0;
    /// Distance between consecutive tokens of one head: a whole row, K and V.
    KVCAP_HOST_DEVICE constexpr kvcap::index_t token_stride() const { return 2 * num_heads * head_dim; }
    /// Offset of element 0 of (tok, head) from the view's k (for K) or v (for V).
    KVCAP_HOST_DEVICE constexpr kvcap::index_t operator()(kvcap::index_t tok, kvcap::index_t head) const {
      return tok * token_stride() + head * head_dim;
    }
    /// Elements of the buffer, from k: `capacity` rows. The view's v addresses its last
    /// `capacity · token_stride() − heads · dim` elements.
    KVCAP_HOST_DEVICE constexpr kvcap::index_t required_span_size() const { return capacity * token_stride(); }
  };

  /// The view's v for a buffer whose first element (and the view's k) is `buffer`.
  template <class T>
  static constexpr T* values_of(T* buffer, const mapping& m) {
    return buffer + m.num_heads * m.head_dim;
  }
};
static_assert(kvcap::layout<kv_fused>);

}  // namespace user
