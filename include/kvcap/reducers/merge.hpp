#pragma once
// kvcap/reducers/merge.hpp — fold each dropped token into its most similar kept neighbour.
//
// Candidates for a dropped token are the kept tokens next to it: the nearest kept slot
// before and after it in the cache, and its kept structure neighbours (the same patch in
// the previous and next frame, the 4 grid neighbours). It merges into the candidate whose
// key has the highest cosine with its own (ties: the smaller slot), as a size-weighted
// average:  k ← (s_t·k_t + s_d·k_d) / (s_t + s_d), the same for v, s_t ← s_t + s_d.
// Dropped tokens are folded in ascending slot order, so the result is deterministic.
//
// `meta.size` then counts the prompt tokens a slot stands for: an engine may add log(size)
// to that slot's attention logit so that a merged token keeps the attention mass of the
// tokens it absorbed (the proportional-attention correction of token merging, ToMe).
// Keys are averaged after RoPE; tokens of nearby positions rotate alike, which is why
// candidates are neighbours. Positions and all other metadata of the kept token stay.

#include <type_traits>

#include "../scorers/temporal_redundancy.hpp"
#include "concept.hpp"

namespace kvcap::reducers {

struct merge {
  static constexpr bool merges = true;

  template <class Context>
  KVCAP_HOST_DEVICE void reduce(Context& ctx) const {
    const index_t n = ctx.num_tokens();
    for (index_t tok = 0; tok < n; ++tok)
      if (!ctx.is_kept(tok)) fold(ctx, tok, best_target(ctx, tok));
  }

  template <class Context>
  KVCAP_HOST_DEVICE static index_t best_target(const Context& ctx, index_t tok) {
    index_t best = -1;
    float best_cos = 0.f;
    const auto consider = [&](index_t cand) {
      if (cand < 0 || !ctx.is_kept(cand)) return;
      const float c = scorers::cosine(ctx.key(tok), ctx.key(cand));
      if (best < 0 || c > best_cos || (c == best_cos && cand < best)) best = cand, best_cos = c;
    };
    index_t before = tok - 1, after = tok + 1;
    while (before >= 0 && !ctx.is_kept(before)) --before;
    while (after < ctx.num_tokens() && !ctx.is_kept(after)) ++after;
    consider(before);
    if (after < ctx.num_tokens()) consider(after);
    constexpr grid_offset steps[6] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
    index_t slot = 0;
    for (const grid_offset& d : steps)
      if (ctx.neighbour(tok, d, slot)) consider(slot);
    return best;
  }

  template <class Context>
  KVCAP_HOST_DEVICE static void fold(Context& ctx, index_t tok, index_t target) {
    if (target < 0) return;  // nothing kept in this head: the token is simply evicted
    auto& into = ctx.meta(target);
    const float wt = static_cast<float>(into.size), wd = static_cast<float>(ctx.meta(tok).size);
    const float inv = 1.f / (wt + wd);
    const auto kt = ctx.key(target), kd = ctx.key(tok), vt = ctx.value(target), vd = ctx.value(tok);
    using element = std::remove_cv_t<std::remove_pointer_t<decltype(kt.data)>>;
    for (index_t i = 0; i < kt.size; ++i) {
      kt.data[i] = static_cast<element>((wt * kt[i] + wd * kd[i]) * inv);
      vt.data[i] = static_cast<element>((wt * vt[i] + wd * vd[i]) * inv);
    }
    into.size += ctx.meta(tok).size;
  }
};
static_assert(reducer<merge>);

}  // namespace kvcap::reducers
