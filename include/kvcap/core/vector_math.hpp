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

/// a·a, b·b and a·b of one pass.
struct dot_products {
  float aa = 0.f, bb = 0.f, ab = 0.f;
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

/// Which of the three sums a reduction wants.
struct sums {
  bool aa, bb, ab;
};

/// Adds the wanted products of one element pair, x·x, y·y and x·y, to `s`.
template <sums Want>
KVCAP_HOST_DEVICE inline void add_products(float x, float y, dot_products& s) {
  if constexpr (Want.aa) s.aa += x * x;
  if constexpr (Want.bb) s.bb += y * y;
  if constexpr (Want.ab) s.ab += x * y;
}

/// add_products of a[i], b[i] for i in [first, last), in index order.
template <sums Want, class A, class B>
KVCAP_HOST_DEVICE inline void add_elements(vector_ref<A> a, vector_ref<B> b, index_t first, index_t last,
                                           dot_products& s) {
  for (index_t i = first; i < last; ++i) add_products<Want>(a[i], Want.bb || Want.ab ? b[i] : 0.f, s);
}

/// Elements [i, i + N) of a and b loaded (16 bytes at a time), then added as add_elements would.
template <sums Want, index_t N, class A, class B>
KVCAP_HOST_DEVICE inline void add_loaded(vector_ref<A> a, vector_ref<B> b, index_t i, dot_products& s) {
  float x[N], y[N] = {};
  load_run(a, i, x);
  if constexpr (Want.bb || Want.ab) load_run(b, i, y);
  for (index_t j = 0; j < N; ++j) add_products<Want>(x[j], y[j], s);
}

/// The same over the leading whole 16-byte runs of 16-byte aligned `a` and `b`: `Batch` runs
/// are loaded before any of them is added (so a thread that walks a row alone waits for
/// memory once per batch, not once per run), then added in index order exactly as
/// add_elements would. Returns the first index it did not cover.
template <sums Want, index_t Batch = 4, class A, class B>
KVCAP_HOST_DEVICE inline index_t add_runs(vector_ref<A> a, vector_ref<B> b, dot_products& s) {
  constexpr index_t pa = per_16_bytes<A>, pb = per_16_bytes<B>;
  static_assert(pa > 0 && pb > 0);
  constexpr index_t run = pa > pb ? pa : pb;  // both divide it: powers of two
  index_t i = 0;
  for (; i + Batch * run <= a.size; i += Batch * run) add_loaded<Want, Batch * run>(a, b, i, s);
  for (; i + run <= a.size; i += run) add_loaded<Want, run>(a, b, i, s);
  return i;
}

/// The wanted sums over all of `a` and `b`. The device reads 16-byte aligned runs 16 bytes
/// at a time (add_runs), the host element by element; both add the same products in the
/// same order, so host and device scores are bit-identical.
template <sums Want, class A, class B>
KVCAP_HOST_DEVICE inline dot_products reduce(vector_ref<A> a, vector_ref<B> b) {
  dot_products s;
  index_t i = 0;
#ifdef __CUDA_ARCH__
  if constexpr (per_16_bytes<A> > 0 && per_16_bytes<B> > 0)
    if (aligned_16(a) && aligned_16(b)) i = add_runs<Want>(a, b, s);
#endif
  add_elements<Want>(a, b, i, a.size, s);
  return s;
}

}  // namespace detail

template <class A, class B>
KVCAP_HOST_DEVICE inline float dot(vector_ref<A> a, vector_ref<B> b) {
  return detail::reduce<detail::sums{.aa = false, .bb = false, .ab = true}>(a, b).ab;
}

template <class A>
KVCAP_HOST_DEVICE inline float squared_norm(vector_ref<A> a) {
  return detail::reduce<detail::sums{.aa = true, .bb = false, .ab = false}>(a, a).aa;
}

template <class A>
KVCAP_HOST_DEVICE inline float norm(vector_ref<A> a) {
  return sqrtf(squared_norm(a));
}

/// squared_norm(a), squared_norm(b) and dot(a, b), bit-identical to the three calls: each sum
/// adds the same products in the same index order. The three chains are independent, so a
/// cosine waits for one chain of dependent adds instead of three, and reads each element once.
template <class A, class B>
KVCAP_HOST_DEVICE inline dot_products dots(vector_ref<A> a, vector_ref<B> b) {
  return detail::reduce<detail::sums{.aa = true, .bb = true, .ab = true}>(a, b);
}

/// Cosine of two vectors; 0 if either is zero (or the product of their norms underflows).
template <class A, class B>
KVCAP_HOST_DEVICE inline float cosine(vector_ref<A> a, vector_ref<B> b) {
  const dot_products s = dots(a, b);
  const float denom = sqrtf(s.aa) * sqrtf(s.bb);
  return denom > 0.f ? s.ab / denom : 0.f;
}

}  // namespace kvcap
