#pragma once
// kvcap/core/thread_group.hpp — the threads that run one policy call together.
//
// A policy whose work splits across threads (a merging reducer's candidate cosines and row
// folds) is written once against a group of at most 32 threads:
//   rank(), size()        to share out a loop;
//   sync()                to order the group's memory effects;
//   shuffle_xor(v, mask)  the `v` of thread rank() ^ mask, to combine per-thread results;
//   ballot(p)             a word whose bit r is thread r's `p`, the same in every thread;
//   stage(rows, count)    make `count` rows (vector_refs of one length) that every thread
//                         reads many times cheap to read: a group may copy them into memory
//                         of its own and repoint `rows` at the copies, which hold the same
//                         elements; every thread passes the same rows.
// The host executor runs it with `single_thread` (size 1: every loop runs whole, all_reduce
// is the identity, stage leaves the rows where they are); the device runs the same body with
// a warp (kvcap/device/warp_group.cuh). For the two to agree bit for bit, what a group
// combines must not depend on the order it is combined in (an argmax under a total order,
// say) and per-element work must be the same per thread.
// Plain C++ with host/device annotations.

#include <bit>
#include <cstdint>

#include "config.hpp"
#include "vector_math.hpp"

namespace kvcap {

/// One thread alone: the host executor's group.
struct single_thread {
  KVCAP_HOST_DEVICE constexpr int rank() const { return 0; }
  KVCAP_HOST_DEVICE constexpr int size() const { return 1; }
  KVCAP_HOST_DEVICE constexpr void sync() const {}
  template <class V>
  KVCAP_HOST_DEVICE constexpr V shuffle_xor(V v, int) const {
    return v;
  }
  KVCAP_HOST_DEVICE constexpr std::uint32_t ballot(bool p) const { return p ? 1u : 0u; }
  template <class E>
  KVCAP_HOST_DEVICE constexpr void stage(vector_ref<const E>*, int) const {}
};

/// The position of the lowest set bit of a non-zero word.
KVCAP_HOST_DEVICE inline int lowest_bit(std::uint32_t word) {
#ifdef __CUDA_ARCH__
  return __ffs(static_cast<int>(word)) - 1;
#else
  return std::countr_zero(word);
#endif
}

/// The position of the highest set bit of a non-zero word.
KVCAP_HOST_DEVICE inline int highest_bit(std::uint32_t word) {
#ifdef __CUDA_ARCH__
  return 31 - __clz(static_cast<int>(word));
#else
  return std::bit_width(word) - 1;
#endif
}

/// `op` folded over every thread's `v` (a butterfly: every thread gets the result). `op` must
/// be commutative and associative for the result not to depend on the group's size.
template <class Group, class V, class Op>
KVCAP_HOST_DEVICE constexpr V all_reduce(const Group& g, V v, Op op) {
  for (int mask = 1; mask < g.size(); mask *= 2) v = op(v, g.shuffle_xor(v, mask));
  return v;
}

}  // namespace kvcap
