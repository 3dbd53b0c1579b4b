#pragma once
// kvcap/core/workspace.hpp — carving one workspace buffer into aligned sub-buffers.
//
// The CUB convention: the same carve sequence runs twice, first over a null buffer to
// learn the size, then over the real buffer. Size query and real run cannot disagree.

#include <cstddef>
#include <cstdint>

#include "config.hpp"

namespace kvcap {

inline constexpr std::size_t workspace_alignment = 256;

constexpr std::size_t align_up(std::size_t bytes, std::size_t alignment = workspace_alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

class workspace_carver {
 public:
  /// `base == nullptr` only measures.
  explicit constexpr workspace_carver(void* base = nullptr) : base_(static_cast<std::byte*>(base)) {}

  template <class T>
  constexpr T* take(index_t count) {
    const std::size_t at = used_;
    used_ += align_up(static_cast<std::size_t>(count) * sizeof(T));
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  constexpr std::size_t bytes() const { return used_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t used_ = 0;
};

}  // namespace kvcap
