#pragma once
// kvcap/structures/chunk_planner.hpp — where the prefill chunks of a prompt end.
//
// A chunk of at most `limit` tokens ends at the strongest boundary (segment > frame >
// tile > row > token) found in the upper half of its reach, at the furthest such place:
// with 28×28-token frames and max_chunk 784, every chunk is exactly one frame; with 16×24
// frames and 784, two frames (768 tokens). Only when no boundary stronger than a token lies
// there is the chunk cut mid-unit. The end of the prompt is always a boundary.
//
// Hybrid schedule (the paper's default): the first chunk is one bulk pass of up to
// `bulk_tokens` (typically the budget: it fits without any eviction), then chunks of up to
// `max_chunk`. The bulk chunk is larger than max_chunk when the budget is: it still fits,
// because it arrives in an empty cache of capacity budget + max_chunk; size the engine's
// chunk buffers by max_chunk_size(plan). Planning allocates the returned vector; it runs
// once per prompt, never on the per-chunk path.

#include <algorithm>
#include <vector>

#include "../core/error.hpp"
#include "concept.hpp"

namespace kvcap {

struct chunk_range {
  index_t begin = 0, end = 0;
  constexpr index_t size() const { return end - begin; }
  friend constexpr bool operator==(const chunk_range&, const chunk_range&) = default;
};

struct chunk_schedule {
  index_t max_chunk = 0;    ///< the executor's declared maximum chunk
  index_t bulk_tokens = 0;  ///< hybrid: first chunk may hold up to this many (0: no bulk pass)

  /// The paper's hybrid schedule for a cache of `budget` tokens.
  static constexpr chunk_schedule hybrid(index_t budget, index_t max_chunk) {
    return {max_chunk, std::max(budget, max_chunk)};
  }
  static constexpr chunk_schedule blockwise(index_t max_chunk) { return {max_chunk, 0}; }
};

/// End of the chunk that starts at `begin` and may hold up to `limit` tokens.
template <structure S>
constexpr index_t chunk_end(const S& s, index_t begin, index_t limit) {
  const index_t n = s.num_tokens();
  const index_t reach = std::min(n, begin + limit);
  if (reach == n) return n;
  const index_t floor = begin + std::max<index_t>(1, limit / 2);
  index_t best = reach;
  auto best_rank = boundary::token;
  for (index_t e = reach; e >= floor; --e) {
    const boundary b = s.boundary_before(e);
    if (b > best_rank) best = e, best_rank = b;
  }
  return best;
}

template <structure S>
std::vector<chunk_range> plan_chunks(const S& s, chunk_schedule schedule) {
  detail::require(schedule.max_chunk > 0, "schedule.max_chunk", "> 0", schedule.max_chunk);
  std::vector<chunk_range> chunks;
  const index_t n = s.num_tokens();
  for (index_t begin = 0; begin < n;) {
    const index_t limit = chunks.empty() && schedule.bulk_tokens > 0 ? schedule.bulk_tokens
                                                                      : schedule.max_chunk;
    const index_t end = chunk_end(s, begin, limit);
    chunks.push_back({begin, end});
    begin = end;
  }
  return chunks;
}

/// The largest chunk of a plan: what the engine's per-chunk buffers must hold.
inline index_t max_chunk_size(const std::vector<chunk_range>& chunks) {
  index_t m = 0;
  for (const chunk_range& c : chunks) m = std::max(m, c.size());
  return m;
}

}  // namespace kvcap
