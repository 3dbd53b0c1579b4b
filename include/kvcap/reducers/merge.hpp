#pragma once
// kvcap/reducers/merge.hpp — fold each dropped token into its most similar kept neighbour.
//
// Candidates for a dropped token are the kept tokens next to it: the nearest kept slot
// before and after it in the cache, and its kept structure neighbours (the same patch in
// the previous and next frame, the 4 grid neighbours). It merges into the candidate whose
// key has the highest cosine with its own (ties, and cosines that are NaN because a norm
// overflowed, which count as −inf: the smaller slot), as a size-weighted average:
//     k ← (s_t·k_t + s_d·k_d) / (s_t + s_d),  the same for v,  s_t ← s_t + s_d.
// Dropped tokens are folded in ascending slot order (a later token's cosines see the keys
// earlier folds wrote), so the result is deterministic. A token's turn touches only its
// candidates, so turns whose candidates differ commute: the device takes them side by side,
// in rounds that keep the slot order wherever candidates are shared (device/reduce_rounds.cuh).
//
// `meta.size` then counts the prompt tokens a slot stands for: an engine may add log(size)
// to that slot's attention logit so that a merged token keeps the attention mass of the
// tokens it absorbed (the proportional-attention correction of token merging, ToMe).
// Keys are averaged after RoPE; tokens of nearby positions rotate alike, which is why
// candidates are neighbours. Positions and all other metadata of the kept token stay.
//
// The body is written once for a thread group (core/thread_group.hpp): the host runs it
// alone, the device with a warp that reads the kept flags a word at a time, looks up the
// structure neighbours a thread each, stages the keys it compares in shared memory, and shares
// out the candidates' cosines and the fold's elements. Each cosine is computed whole by one
// thread, in index order, and the choice is an argmax under a total order, so both keep
// bit-identical caches.

#include <cstdint>
#include <type_traits>

#include "../core/ranking.hpp"
#include "../core/thread_group.hpp"
#include "../core/vector_math.hpp"
#include "../structures/concept.hpp"
#include "concept.hpp"

namespace kvcap::reducers {

struct merge {
  static constexpr bool merges = true;
  static constexpr int max_candidates = 8;  ///< before, after, 6 structure neighbours
  /// Rows a group stages per dropped token: its key and its candidates' keys.
  static constexpr int staged_rows = 1 + max_candidates;

  template <class Context>
  KVCAP_HOST_DEVICE void reduce(Context& ctx) const {
    reduce(ctx, single_thread{});
  }

  /// The same, run by every thread of `group` together. The group reads which slots are kept
  /// a word of group.size() slots at a time, and the nearest kept slots before and after the
  /// current token are carried along the walk (the kept set does not change while merging),
  /// so a run of dropped tokens costs one pass, not a search per token.
  template <class Context, class Group>
  KVCAP_HOST_DEVICE void reduce(Context& ctx, const Group& group) const {
    const index_t n = ctx.num_tokens();
    index_t before = -1, after = -1;
    for (index_t base = 0; base < n; base += group.size()) {
      const std::uint32_t kept = kept_bits(ctx, base, group);
      const index_t end = base + group.size() < n ? base + group.size() : n;
      for (index_t tok = base; tok < end; ++tok) {
        if (kept >> (tok - base) & 1u) {
          before = tok;
          continue;
        }
        if (after <= tok) after = next_kept(ctx, tok, group);
        reduce_token(ctx, tok, {before, after}, group);
      }
    }
  }

  /// The nearest kept slots before and after a dropped token (-1 and num_tokens(): none).
  struct bracket {
    index_t before, after;
  };

  /// A local reducer (reducers/concept.hpp): the turn of dropped token `tok` reads its own
  /// rows and its candidates' (keys, and the sizes and values of the one it folds into) and
  /// writes only that one, so tokens whose candidates differ may take their turns side by side.
  static constexpr bool local = true;
  /// The turn of dropped token `tok`, whose bracket is `near`: fold it into its best candidate.
  template <class Context, class Group = single_thread>
  KVCAP_HOST_DEVICE void reduce_token(Context& ctx, index_t tok, bracket near, const Group& group = {}) const {
    fold(ctx, tok, best_target(ctx, tok, near, group), group);
  }
  /// Bit j: slot base + j is kept, for j < group.size().
  template <class Context, class Group>
  KVCAP_HOST_DEVICE static std::uint32_t kept_bits(const Context& ctx, index_t base, const Group& group) {
    const index_t mine = base + group.rank();
    return group.ballot(mine < ctx.num_tokens() && ctx.is_kept(mine));
  }
  /// The first kept slot after `tok` (num_tokens() if none).
  template <class Context, class Group = single_thread>
  KVCAP_HOST_DEVICE static index_t next_kept(const Context& ctx, index_t tok, const Group& group = {}) {
    for (index_t base = tok + 1; base < ctx.num_tokens(); base += group.size())
      if (const std::uint32_t kept = kept_bits(ctx, base, group); kept != 0) return base + lowest_bit(kept);
    return ctx.num_tokens();
  }

  /// A candidate and its cosine with the dropped token; `better` is a total order.
  struct choice {
    float cosine = 0.f;
    index_t slot = -1;  ///< -1: none
    KVCAP_HOST_DEVICE static constexpr choice better(const choice& a, const choice& b) {
      if (a.slot < 0 || b.slot < 0) return a.slot < 0 ? b : a;
      if (a.cosine != b.cosine) return a.cosine > b.cosine ? a : b;
      return a.slot < b.slot ? a : b;
    }
  };

  /// The kept structure neighbours of a dropped token, step by step (-1: none or not kept).
  /// Each thread of a group looks up its share of the steps; `gather` keeps what was found.
  struct neighbours {
    std::int32_t slot[6] = {-1, -1, -1, -1, -1, -1};
    KVCAP_HOST_DEVICE static constexpr neighbours gather(const neighbours& a, const neighbours& b) {
      neighbours out;
      for (int i = 0; i < 6; ++i) out.slot[i] = a.slot[i] > b.slot[i] ? a.slot[i] : b.slot[i];
      return out;
    }
  };

  /// The kept slots `tok` may merge into (possibly repeated), in `out`; returns how many.
  /// `near` is the bracket of `tok`.
  template <class Context, class Group = single_thread>
  KVCAP_HOST_DEVICE static int candidates(const Context& ctx, index_t tok, bracket near, index_t (&out)[max_candidates],
                                          const Group& group = {}) {
    int count = 0;
    if (near.before >= 0) out[count++] = near.before;
    if (near.after < ctx.num_tokens()) out[count++] = near.after;
    constexpr grid_offset steps[6] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
    neighbours mine;
    for (int i = group.rank(); i < 6; i += group.size())
      if (index_t slot = 0; ctx.neighbour(tok, steps[i], slot) && ctx.is_kept(slot))
        mine.slot[i] = static_cast<std::int32_t>(slot);
    const neighbours found = all_reduce(group, mine, neighbours::gather);
    for (const std::int32_t slot : found.slot)
      if (slot >= 0) out[count++] = slot;
    return count;
  }

  /// The candidate `tok` merges into, or -1 when none is kept. `near` is the bracket of `tok`.
  /// The group stages the token's key and its candidates' keys, then each thread computes
  /// whole cosines of its share of the candidates.
  template <class Context, class Group = single_thread>
  KVCAP_HOST_DEVICE static index_t best_target(const Context& ctx, index_t tok, bracket near, const Group& group = {}) {
    index_t cand[max_candidates];
    const int count = candidates(ctx, tok, near, cand, group);
    using element = std::remove_cv_t<std::remove_pointer_t<decltype(ctx.key(tok).data)>>;
    vector_ref<const element> keys[staged_rows];
    keys[0] = ctx.key(tok);
    for (int i = 0; i < count; ++i) keys[1 + i] = ctx.key(cand[i]);
    group.stage(keys, 1 + count);
    choice best;
    for (int i = group.rank(); i < count; i += group.size())
      best = choice::better(best, {sanitize_score(cosine(keys[0], keys[1 + i])), cand[i]});
    return all_reduce(group, best, choice::better).slot;
  }

  /// k, v and size of `target` ← the size-weighted average with `tok` (no-op for -1).
  template <class Context, class Group = single_thread>
  KVCAP_HOST_DEVICE static void fold(Context& ctx, index_t tok, index_t target, const Group& group = {}) {
    if (target < 0) return;  // nothing kept in this head: the token is simply evicted
    auto& into = ctx.meta(target);
    const float wt = static_cast<float>(into.size), wd = static_cast<float>(ctx.meta(tok).size);
    const float inv = 1.f / (wt + wd);
    const auto kt = ctx.key(target), kd = ctx.key(tok), vt = ctx.value(target), vd = ctx.value(tok);
    using element = std::remove_cv_t<std::remove_pointer_t<decltype(kt.data)>>;
    // A thread's elements `fold_batch` at a time, all read before any is written: the writes
    // may alias the reads as far as a compiler knows, so element by element a device thread
    // would wait for each element's loads before it could issue the next.
    constexpr int fold_batch = 4;
    const index_t n = kt.size, step = group.size();
    for (index_t i0 = group.rank(); i0 < n; i0 += fold_batch * step) {
      float k_into[fold_batch], k_from[fold_batch], v_into[fold_batch], v_from[fold_batch];
      for (int u = 0; u < fold_batch; ++u)
        if (const index_t i = i0 + u * step; i < n) k_into[u] = kt[i], k_from[u] = kd[i], v_into[u] = vt[i], v_from[u] = vd[i];
      for (int u = 0; u < fold_batch; ++u)
        if (const index_t i = i0 + u * step; i < n) {
          kt.data[i] = static_cast<element>((wt * k_into[u] + wd * k_from[u]) * inv);
          vt.data[i] = static_cast<element>((wt * v_into[u] + wd * v_from[u]) * inv);
        }
    }
    group.sync();  // every thread has read the sizes
    if (group.rank() == 0) into.size += ctx.meta(tok).size;
    group.sync();  // the next token sees this fold
  }
};
static_assert(reducer<merge> && local_reducer<merge, archetypes::reduce_context>);

}  // namespace kvcap::reducers
