#pragma once
// kvcap/core/workspace.hpp — carving one workspace buffer into aligned sub-buffers.
//
// The CUB convention: the same carve sequence runs twice, first over a null buffer to
// learn the size, then over the real buffer. Size query and real run cannot disagree. A size
// that would not fit in std::size_t is remembered (overflowed()) for the caller to refuse.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "config.hpp"

namespace kvcap {

inline constexpr std::size_t workspace_alignment = 256;

constexpr std::size_t align_up(std::size_t bytes, std::size_t alignment = workspace_alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

class workspace_carver {
 public:
  /// Only measures (in a constant expression too: a size query may be one).
  constexpr workspace_carver() = default;
  /// Carves `base`; `base == nullptr` only measures.
  explicit workspace_carver(void* base) : base_(static_cast<std::byte*>(base)) {}

  /// `count` elements of T at the next aligned offset; nullptr while measuring, or once a
  /// size has overflowed (a negative count is an overflow too). More extents multiply the
  /// count (`take<float>(rows, cols)`), checked, so a carve never forms a product that wraps.
  template <class T, std::integral... Extents>
  constexpr T* take(index_t count, Extents... extents) {
    ((count = times(count, static_cast<index_t>(extents))), ...);
    const std::size_t at = used_;
    // used_ is a multiple of the alignment, so room ≥ 0: the most bytes that still round up.
    const std::size_t room = ~std::size_t{0} - at - (workspace_alignment - 1);
    if (overflowed_ || count < 0 || static_cast<std::size_t>(count) > room / sizeof(T)) {
      overflowed_ = true;
      return nullptr;
    }
    used_ += align_up(static_cast<std::size_t>(count) * sizeof(T));
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  constexpr std::size_t bytes() const { return used_; }
  /// A take's size did not fit: bytes() is not the carve's size, and the carve is unusable.
  constexpr bool overflowed() const { return overflowed_; }

 private:
  // a · b, or -1 (an overflow to take) when either is negative or the product passes index_t.
  static constexpr index_t times(index_t a, index_t b) {
    if (a < 0 || b < 0 || (b != 0 && a > std::numeric_limits<index_t>::max() / b)) return -1;
    return a * b;
  }

  std::byte* base_ = nullptr;
  std::size_t used_ = 0;
  bool overflowed_ = false;
};

}  // namespace kvcap
