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

template <class A, class B>
KVCAP_HOST_DEVICE inline float dot(vector_ref<A> a, vector_ref<B> b) {
  float acc = 0.f;
  for (index_t i = 0; i < a.size; ++i) acc += a[i] * b[i];
  return acc;
}

template <class A>
KVCAP_HOST_DEVICE inline float squared_norm(vector_ref<A> a) {
  float acc = 0.f;
  for (index_t i = 0; i < a.size; ++i) acc += a[i] * a[i];
  return acc;
}

template <class A>
KVCAP_HOST_DEVICE inline float norm(vector_ref<A> a) {
  return sqrtf(squared_norm(a));
}

}  // namespace kvcap
