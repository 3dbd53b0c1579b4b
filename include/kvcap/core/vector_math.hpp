#pragma once
// kvcap/core/vector_math.hpp — the small vector maths scorers are written in.
//
// Scorers see keys and values as `vector_ref`s and reduce them with these functions, in
// float, in index order. Host and device executors therefore compute bit-identical scores
// from the same policy, which is what makes their kept sets agree.

#include <math.h>

#include <type_traits>

#include "config.hpp"

namespace kvcap {

/// A contiguous run of `size` elements of any type convertible to float.
template <class Element>
struct vector_ref {
  Element* data = nullptr;
  index_t size = 0;
  KVCAP_HOST_DEVICE float operator[](index_t i) const { return static_cast<float>(data[i]); }
  /// A writable run reads as a read-only one.
  KVCAP_HOST_DEVICE operator vector_ref<const Element>() const
    requires(!std::is_const_v<Element>)
  {
    return {data, size};
  }
};

namespace detail {

/// Elements a 16-byte load holds.
template <class A>
inline constexpr index_t per_16_bytes = 16 % sizeof(A) == 0 && sizeof(A) <= 8 ? static_cast<index_t>(16 / sizeof(A)) : 0;

/// Elements [i, i + N) of `a` as floats, read as N / per_16_bytes<A> 16-byte loads.
template <index_t N, class A>
KVCAP_HOST_DEVICE inline void load_run(vector_ref<A> a, index_t i, float (&out)[N]) {
  constexpr index_t per = per_16_bytes<A>;
  static_assert(per > 0 && N % per == 0);
  using E = std::remove_const_t<A>;
  struct alignas(16) chunk {
    E x[per];
  };
  for (index_t c = 0; c < N / per; ++c) {
    const chunk v = reinterpret_cast<const chunk*>(a.data + i)[c];
    for (index_t j = 0; j < per; ++j) out[c * per + j] = static_cast<float>(v.x[j]);
  }
}

template <class A>
KVCAP_HOST_DEVICE inline bool aligned_16(vector_ref<A> a) {
  return per_16_bytes<A> > 0 && reinterpret_cast<unsigned long long>(a.data) % 16 == 0;
}

}  // namespace detail

// The device reads a 16-byte aligned run 16 bytes at a time, and each thread then adds the
// same products in the same index order as the element loop: the result is bit-identical,
// with a fraction of the load instructions (a thread per token walks its own row).

template <class A, class B>
KVCAP_HOST_DEVICE inline float dot(vector_ref<A> a, vector_ref<B> b) {
  float acc = 0.f;
  index_t i = 0;
#ifdef __CUDA_ARCH__
  constexpr index_t pa = detail::per_16_bytes<A>, pb = detail::per_16_bytes<B>;
  if constexpr (pa > 0 && pb > 0) {
    constexpr index_t n = pa > pb ? pa : pb;  // both divide it: powers of two
    if (detail::aligned_16(a) && detail::aligned_16(b))
      for (; i + n <= a.size; i += n) {
        float x[n], y[n];
        detail::load_run(a, i, x), detail::load_run(b, i, y);
        for (index_t j = 0; j < n; ++j) acc += x[j] * y[j];
      }
  }
#endif
  for (; i < a.size; ++i) acc += a[i] * b[i];
  return acc;
}

template <class A>
KVCAP_HOST_DEVICE inline float squared_norm(vector_ref<A> a) {
  float acc = 0.f;
  index_t i = 0;
#ifdef __CUDA_ARCH__
  if constexpr (detail::per_16_bytes<A> > 0) {
    constexpr index_t n = detail::per_16_bytes<A>;
    if (detail::aligned_16(a))
      for (; i + n <= a.size; i += n) {
        float x[n];
        detail::load_run(a, i, x);
        for (index_t j = 0; j < n; ++j) acc += x[j] * x[j];
      }
  }
#endif
  for (; i < a.size; ++i) acc += a[i] * a[i];
  return acc;
}

template <class A>
KVCAP_HOST_DEVICE inline float norm(vector_ref<A> a) {
  return sqrtf(squared_norm(a));
}

/// a·a, b·b and a·b of one pass.
struct dot_products {
  float aa = 0.f, bb = 0.f, ab = 0.f;
};

/// squared_norm(a), squared_norm(b) and dot(a, b), bit-identical to the three calls: each sum
/// adds the same products in the same index order (on the device after the same 16-byte
/// loads). The three chains are independent, so a cosine waits for one chain of dependent
/// adds instead of three, and reads each element once.
template <class A, class B>
KVCAP_HOST_DEVICE inline dot_products dots(vector_ref<A> a, vector_ref<B> b) {
  dot_products s;
  index_t i = 0;
#ifdef __CUDA_ARCH__
  constexpr index_t pa = detail::per_16_bytes<A>, pb = detail::per_16_bytes<B>;
  if constexpr (pa > 0 && pb > 0) {
    constexpr index_t n = pa > pb ? pa : pb;
    if (detail::aligned_16(a) && detail::aligned_16(b))
      for (; i + n <= a.size; i += n) {
        float x[n], y[n];
        detail::load_run(a, i, x), detail::load_run(b, i, y);
        for (index_t j = 0; j < n; ++j) s.aa += x[j] * x[j], s.bb += y[j] * y[j], s.ab += x[j] * y[j];
      }
  }
#endif
  for (; i < a.size; ++i) {
    const float x = a[i], y = b[i];
    s.aa += x * x, s.bb += y * y, s.ab += x * y;
  }
  return s;
}

/// Cosine of two vectors; 0 if either is zero (or the product of their norms underflows).
template <class A, class B>
KVCAP_HOST_DEVICE inline float cosine(vector_ref<A> a, vector_ref<B> b) {
  const dot_products s = dots(a, b);
  const float denom = sqrtf(s.aa) * sqrtf(s.bb);
  return denom > 0.f ? s.ab / denom : 0.f;
}

}  // namespace kvcap
