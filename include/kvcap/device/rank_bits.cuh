#pragma once
// kvcap/device/rank_bits.cuh — kvcap::ranks_before as one unsigned 64-bit key, and the radix
// select over such keys that picks a segment's kept set.
//
// Within one (view, head) segment, slot order is logical-index order (appends take strictly
// increasing indices and compaction is stable), so "smaller logical index" is "smaller slot".
// The key packs, from the top bit down,
//     [63]      is_protected
//     [62..31]  the score's bits, mapped so that unsigned order is float order
//     [30..0]   (2^31 − 1) − slot
// and then  ranks_before(a, b)  ⇔  key(a) > key(b)  for tokens of one segment. The score must
// already be sanitized (NaN → −inf, see kvcap::sanitize_score); −0.0 and +0.0 compare equal
// in ranks_before, so both map to the bits of +0.0. Keys are unique, so "the k largest keys"
// is exactly the host's kept set.
//
// The radix select walks 8-bit digits from the top; the host reference and the device kernel
// share the step below, so they choose the same digits. Plain C++: any C++20 compiler.

#include <cstdint>
#include <cstring>

#include "../core/config.hpp"

namespace kvcap::device {

inline constexpr int slot_bits = 31;
/// Slots per segment the key can tell apart: capacities must stay below this.
inline constexpr index_t max_segment_slots = index_t{1} << slot_bits;

KVCAP_HOST_DEVICE inline std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

/// Unsigned bits with the order of the (non-NaN) floats: a < b ⇔ order_bits(a) < order_bits(b),
/// and −0.0, +0.0 give the same bits.
KVCAP_HOST_DEVICE inline std::uint32_t order_bits(float score) {
  const std::uint32_t u = float_bits(score == 0.f ? 0.f : score);
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

/// The key of slot `slot` of a segment (slot < max_segment_slots; score sanitized).
KVCAP_HOST_DEVICE inline std::uint64_t encode_rank(bool is_protected, float score, index_t slot) {
  return (static_cast<std::uint64_t>(is_protected) << 63) |
         (static_cast<std::uint64_t>(order_bits(score)) << slot_bits) |
         static_cast<std::uint64_t>((max_segment_slots - 1) - slot);
}

/// The slot a key was made for.
KVCAP_HOST_DEVICE constexpr index_t decode_slot(std::uint64_t key) {
  return (max_segment_slots - 1) - static_cast<index_t>(key & static_cast<std::uint64_t>(max_segment_slots - 1));
}

/// A segment's kept set: the keys whose top bits, key >> shift, are at least `prefix`.
struct selection {
  std::uint64_t prefix = 0;
  std::int32_t shift = 0;
  std::int32_t pad_ = 0;
  index_t kept = 0;  ///< how many keys that is (0: none)

  KVCAP_HOST_DEVICE constexpr bool keeps(std::uint64_t key) const {
    return kept > 0 && (key >> shift) >= prefix;
  }
  /// Keep all `n` keys, or none.
  static KVCAP_HOST_DEVICE constexpr selection all(index_t n) { return {0, 0, 0, n}; }
  static KVCAP_HOST_DEVICE constexpr selection none() { return {0, 0, 0, 0}; }
};

inline constexpr int radix_bits = 8;
inline constexpr int radix_digits = 1 << radix_bits;
inline constexpr int radix_first_shift = 64 - radix_bits;

/// State of a most-significant-digit-first radix select for the `remaining` largest keys.
struct radix_state {
  std::uint64_t prefix = 0;   ///< digits chosen so far
  index_t remaining = 0;      ///< keys still to take among those whose top bits equal prefix
  std::int32_t shift = radix_first_shift;  ///< shift of the digit the next pass histograms
  bool done = false;
};

/// Whether a key takes part in the pass at `st.shift` (its higher digits equal the prefix).
KVCAP_HOST_DEVICE constexpr bool radix_candidate(const radix_state& st, std::uint64_t key) {
  return st.shift == radix_first_shift || (key >> (st.shift + radix_bits)) == st.prefix;
}
KVCAP_HOST_DEVICE constexpr int radix_digit(const radix_state& st, std::uint64_t key) {
  return static_cast<int>((key >> st.shift) & (radix_digits - 1));
}

/// The digit of a pass holding the remaining-th largest candidate: `count` candidates have
/// this digit and `above` have a larger one. Exactly one digit of a pass answers true.
KVCAP_HOST_DEVICE constexpr bool radix_chosen(index_t above, index_t count, index_t remaining) {
  return above < remaining && remaining <= above + count;
}

/// Advances the state past a pass that chose `digit` (with `above`, `count` as above).
KVCAP_HOST_DEVICE constexpr void radix_advance(radix_state& st, int digit, index_t above, index_t count) {
  st.prefix = (st.prefix << radix_bits) | static_cast<std::uint64_t>(digit);
  st.remaining -= above;
  // Every candidate with this digit is kept: the kept set is key >> shift >= prefix.
  if (count == st.remaining || st.shift == 0) st.done = true;
  else st.shift -= radix_bits;
}

/// The selection a finished state stands for.
KVCAP_HOST_DEVICE constexpr selection radix_result(const radix_state& st, index_t keep) {
  return {st.prefix, st.shift, 0, keep};
}

}  // namespace kvcap::device
