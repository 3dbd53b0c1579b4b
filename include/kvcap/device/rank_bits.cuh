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
// The radix select walks 8-bit digits from the top, over these keys or the 128-bit keys by
// which the heads of a view share its budget (shared_heads.cuh); the host reference and the
// device kernels share the steps below, so they choose the same digits. Plain C++: any C++20
// compiler.

#include <cstdint>
#include <cstring>

#include "../core/config.hpp"

namespace kvcap::device {

inline constexpr int slot_bits = 31;
/// Slots per segment the key can tell apart: capacities must stay below this.
inline constexpr index_t max_segment_slots = index_t{1} << slot_bits;
/// The bits of a key that hold its slot.
inline constexpr auto slot_mask = static_cast<std::uint64_t>(max_segment_slots - 1);

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
  return (max_segment_slots - 1) - static_cast<index_t>(key & slot_mask);
}

/// A 128-bit unsigned key, `hi` the upper word, with the operations the radix select takes
/// (shared_heads.cuh ranks the tokens of all heads of a view with it).
struct wide_key {
  std::uint64_t hi = 0, lo = 0;

  KVCAP_HOST_DEVICE friend constexpr bool operator==(wide_key a, wide_key b) { return a.hi == b.hi && a.lo == b.lo; }
  KVCAP_HOST_DEVICE friend constexpr bool operator>=(wide_key a, wide_key b) {
    return a.hi != b.hi ? a.hi > b.hi : a.lo >= b.lo;
  }
  /// Shifts by 0..127 bits.
  KVCAP_HOST_DEVICE friend constexpr wide_key operator>>(wide_key a, int s) {
    if (s == 0) return a;
    if (s >= 64) return {0, a.hi >> (s - 64)};
    return {a.hi >> s, (a.lo >> s) | (a.hi << (64 - s))};
  }
};

/// The key by which the heads of a view compete for its shared budget (shared_heads.cuh):
/// the (protected, score) bits of the token's rank key `rank`, then its logical index (the
/// smaller first), then its head (the smaller first), so that the order of these keys is
/// ranks_before and then the smaller head: the host executor's order for head-adaptive
/// budgets. They are unique in a view (logical indices are unique along a head).
///     hi  [63] protected  [62..31] score  [30..0] bits 63..33 of ~(index ^ 2^63)
///     lo  [63..31] its bits 32..0  [30..0] (2^31 − 1) − head
KVCAP_HOST_DEVICE constexpr wide_key encode_shared_rank(std::uint64_t rank, std::int64_t index, index_t head) {
  const std::uint64_t later = ~(static_cast<std::uint64_t>(index) ^ (std::uint64_t{1} << 63));  // reversed order
  return {(rank & ~slot_mask) | (later >> 33),
          (later << 31) | static_cast<std::uint64_t>((max_segment_slots - 1) - head)};
}
/// A token its head's floor keeps: above every key encode_shared_rank makes (whose score bits
/// are never all ones: that would be a NaN's, and scores are sanitized).
inline constexpr wide_key floor_kept_key{~std::uint64_t{0}, ~std::uint64_t{0}};

/// Bits of a radix-select key, its low word, and a prefix with one more digit appended.
template <class Key>
inline constexpr int key_bits = static_cast<int>(8 * sizeof(Key));
KVCAP_HOST_DEVICE constexpr std::uint64_t low_word(std::uint64_t key) { return key; }
KVCAP_HOST_DEVICE constexpr std::uint64_t low_word(wide_key key) { return key.lo; }
KVCAP_HOST_DEVICE constexpr std::uint64_t append_digit(std::uint64_t prefix, int bits, int digit) {
  return (prefix << bits) | static_cast<std::uint64_t>(digit);
}
KVCAP_HOST_DEVICE constexpr wide_key append_digit(wide_key prefix, int bits, int digit) {
  return {(prefix.hi << bits) | (prefix.lo >> (64 - bits)), (prefix.lo << bits) | static_cast<std::uint64_t>(digit)};
}

/// A kept set: the keys whose top bits, key >> shift, are at least `prefix`.
template <class Key>
struct basic_selection {
  Key prefix{};
  std::int32_t shift = 0;
  std::int32_t pad_ = 0;
  index_t kept = 0;  ///< how many keys that is (0: none)

  KVCAP_HOST_DEVICE constexpr bool keeps(Key key) const { return kept > 0 && (key >> shift) >= prefix; }
  /// Keep all `n` keys, or none.
  static KVCAP_HOST_DEVICE constexpr basic_selection all(index_t n) { return {Key{}, 0, 0, n}; }
  static KVCAP_HOST_DEVICE constexpr basic_selection none() { return {Key{}, 0, 0, 0}; }
};
/// A segment's kept set, over its 64-bit rank keys.
using selection = basic_selection<std::uint64_t>;

/// A decision made elsewhere (the heads' competition, shared_heads.cuh) carried by the rank
/// keys: the key with its top bit set when kept and cleared when not (its slot bits as they
/// were), and the selection that keeps exactly the keys so marked, so that the reducer and the
/// compaction read the decision as any selection.
KVCAP_HOST_DEVICE constexpr std::uint64_t mark_kept(std::uint64_t rank, bool kept) {
  return (rank & slot_mask) | (static_cast<std::uint64_t>(kept) << 63);
}
KVCAP_HOST_DEVICE constexpr selection marked_selection(index_t kept) { return {1, 63, 0, kept}; }

inline constexpr int radix_bits = 8;
inline constexpr int radix_digits = 1 << radix_bits;
template <class Key>
inline constexpr int radix_first_shift_of = key_bits<Key> - radix_bits;
inline constexpr int radix_first_shift = radix_first_shift_of<std::uint64_t>;

/// State of a most-significant-digit-first radix select for the `remaining` largest keys.
template <class Key>
struct basic_radix_state {
  Key prefix{};               ///< digits chosen so far
  index_t remaining = 0;      ///< keys still to take among those whose top bits equal prefix
  std::int32_t shift = radix_first_shift_of<Key>;  ///< shift of the digit the next pass histograms
  bool done = false;
};
using radix_state = basic_radix_state<std::uint64_t>;

/// Whether a key takes part in the pass at `st.shift` (its higher digits equal the prefix).
template <class Key>
KVCAP_HOST_DEVICE constexpr bool radix_candidate(const basic_radix_state<Key>& st, Key key) {
  return st.shift == radix_first_shift_of<Key> || (key >> (st.shift + radix_bits)) == st.prefix;
}
template <class Key>
KVCAP_HOST_DEVICE constexpr int radix_digit(const basic_radix_state<Key>& st, Key key) {
  return static_cast<int>(low_word(key >> st.shift) & (radix_digits - 1));
}

/// The digit of a pass holding the remaining-th largest candidate: `count` candidates have
/// this digit and `above` have a larger one. Exactly one digit of a pass answers true.
KVCAP_HOST_DEVICE constexpr bool radix_chosen(index_t above, index_t count, index_t remaining) {
  return above < remaining && remaining <= above + count;
}

/// Advances the state past a pass that chose `digit` (with `above`, `count` as above).
template <class Key>
KVCAP_HOST_DEVICE constexpr void radix_advance(basic_radix_state<Key>& st, int digit, index_t above, index_t count) {
  st.prefix = append_digit(st.prefix, radix_bits, digit);
  st.remaining -= above;
  // Every candidate with this digit is kept: the kept set is key >> shift >= prefix.
  if (count == st.remaining || st.shift == 0) st.done = true;
  else st.shift -= radix_bits;
}

/// The selection a finished state stands for.
template <class Key>
KVCAP_HOST_DEVICE constexpr basic_selection<Key> radix_result(const basic_radix_state<Key>& st, index_t keep) {
  return {st.prefix, st.shift, 0, keep};
}

}  // namespace kvcap::device
