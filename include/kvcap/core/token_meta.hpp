#pragma once
// kvcap/core/token_meta.hpp — what kvcap knows about each cached token.
//
// One record per (kv-head, token) slot: heads select their kept tokens independently, so
// slot `tok` of head 0 and of head 1 may hold different original tokens. The record
// travels with its token through every compaction.

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "config.hpp"

namespace kvcap {

enum class segment_kind : std::uint8_t { text = 0, image = 1, video = 2 };

/// Rotary position of a token. Plain RoPE uses `t` only and sets h = w = t (the Qwen2-VL
/// convention for text under M-RoPE); M-RoPE uses all three.
struct rope_position {
  std::int32_t t = 0, h = 0, w = 0;
  friend constexpr bool operator==(const rope_position&, const rope_position&) = default;
};

struct token_meta {
  std::int64_t index = 0;         ///< logical index in the prompt (0, 1, 2, ...); ties break on it
  rope_position position{};       ///< original rotary position; never re-assigned by kvcap
  std::int32_t frame = 0;         ///< frame within its video segment (0 for text and images)
  std::int16_t row = 0, col = 0;  ///< grid coordinates within the frame or image (0 for text)
  std::uint16_t segment = 0;      ///< index of the segment in a mixed structure
  segment_kind kind = segment_kind::text;
  bool is_protected = false;      ///< never evicted (system prompt, question)
  std::int32_t size = 1;          ///< tokens this slot stands for (1, or more after a merge)
  /// Explicit padding, always 0: the record has no indeterminate bytes, so the device
  /// compaction's whole-record copies (64-bit words) read only what a member-wise write of
  /// the record initialised (compute-sanitizer's initcheck holds engines to that).
  std::int32_t reserved = 0;
  friend constexpr bool operator==(const token_meta&, const token_meta&) = default;
};

static_assert(std::is_trivially_copyable_v<token_meta>);
static_assert(offsetof(token_meta, reserved) + sizeof(std::int32_t) == sizeof(token_meta), "no trailing padding");
static_assert(sizeof(token_meta) == 40, "token_meta is part of the peak formula; keep it 40 bytes");

}  // namespace kvcap
