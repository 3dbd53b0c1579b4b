#pragma once
// kvcap/core/ranking.hpp — the one order in which tokens are kept, shared by every executor.
//
// A token ranks before another if it is protected and the other is not; else if its score
// is higher; else if its logical index is smaller. The order is total (indices are unique),
// so "keep the k best" names exactly one set on every backend. A NaN score ranks as -inf.

#include <math.h>

#include <cstdint>

#include "config.hpp"

namespace kvcap {

struct rank_key {
  float score = 0.f;
  std::int64_t index = 0;
  bool is_protected = false;
};

KVCAP_HOST_DEVICE inline float sanitize_score(float s) { return isnan(s) ? -HUGE_VALF : s; }

/// True when `a` is kept in preference to `b`.
KVCAP_HOST_DEVICE constexpr bool ranks_before(const rank_key& a, const rank_key& b) {
  if (a.is_protected != b.is_protected) return a.is_protected;
  if (a.score != b.score) return a.score > b.score;
  return a.index < b.index;
}

}  // namespace kvcap
