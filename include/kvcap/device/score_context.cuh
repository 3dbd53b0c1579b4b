#pragma once
// kvcap/device/score_context.cuh — the score context of one (view, head) segment, as the
// device kernels (and the host reference of the device algorithm) hand it to a scorer, and
// the per-token maths every stage shares with the host executor.
//
// The context offers the archetype API of scorers/concept.hpp over one segment
// (core/segment_access.hpp: a layer view of any layout, the segment's own length, structure
// neighbours by binary search over the head's ascending logical indices, as the host
// executor finds them). next_index() is the logical index after the segment's last token:
// whenever compress has work to do, that token is the last one appended, so this equals the
// host executor's next_index. The structure model's functions must be callable on the
// device: they are constexpr, so device translation units need --expt-relaxed-constexpr.
// Shared inputs (mean unit key, window mass) come from the workspace.
// Plain C++ with host/device annotations.

#include <math.h>

#include "../core/ranking.hpp"
#include "../core/segment_access.hpp"
#include "../core/segment_sums.hpp"
#include "../reducers/concept.hpp"
#include "../reducers/evict.hpp"
#include "../scorers/concept.hpp"
#include "rank_bits.cuh"

namespace kvcap::device {

template <class T, layout Layout, structure Structure>
struct segment_score_context : segment_access<T, Layout, Structure> {
  const float* mean_unit_key_;  // (dim), when the scorer asked for it
  const float* window_mass_;    // (tok), when the scorer asked for it

  KVCAP_HOST_DEVICE index_t next_index() const {
    return this->length_ > 0 ? meta(this->length_ - 1).index + 1 : 0;
  }
  KVCAP_HOST_DEVICE vector_ref<const T> key(index_t tok) const { return this->view->key(tok, this->head_); }
  KVCAP_HOST_DEVICE vector_ref<const T> value(index_t tok) const { return this->view->value(tok, this->head_); }
  KVCAP_HOST_DEVICE const token_meta& meta(index_t tok) const { return this->view->meta_at(tok, this->head_); }
  KVCAP_HOST_DEVICE vector_ref<const float> mean_unit_key() const { return {mean_unit_key_, this->head_dim()}; }
  KVCAP_HOST_DEVICE float window_mass(index_t tok) const { return window_mass_[tok]; }
};

/// What a call's policies need beyond the cache, as the workspace carve sees it.
struct policy_needs {
  bool mean_unit_key = false;
  index_t num_components = 0;  ///< composite scorers: components held per token
  bool window_mass = false;    ///< window scorers: the observation window's attention mass
  bool dropped_lists = false;  ///< local reducers (merge): each segment's dropped tokens, claims on kept slots
};

/// A reducer that promises locality (reducers/concept.hpp: `local`).
template <class Reducer>
inline constexpr bool is_local_reducer = [] {
  if constexpr (requires { Reducer::local; }) return static_cast<bool>(Reducer::local);
  else return false;
}();

template <any_scorer Scorer, reducer Reducer = reducers::evict>
inline constexpr policy_needs needs_of = {Scorer::inputs.mean_unit_key, num_components_v<Scorer>,
                                          Scorer::inputs.window_mass, is_local_reducer<Reducer>};

/// |k| of slot `tok`, as the host executor computes it for the mean unit key.
template <class Context>
KVCAP_HOST_DEVICE inline float key_norm_at(const Context& ctx, index_t tok) {
  return norm(ctx.key(tok));
}

/// Component `dim` of the mean over the segment of k / |k| (zero keys add nothing), summed
/// in slot order and divided by the length: the host executor's operations in its order, so
/// the result is bit-identical. `norms` holds key_norm_at of every slot. The device's
/// mean_kernel (ordered_sums.cuh) stages the slots through shared memory and adds the same
/// terms in the same order.
template <class Context>
KVCAP_HOST_DEVICE inline float mean_unit_key_at(const Context& ctx, const float* norms, index_t dim) {
  const index_t n = ctx.num_tokens();
  float acc = 0.f;
  for (index_t tok = 0; tok < n; ++tok)
    if (unit_key_term::counts(norms[tok])) acc += unit_key_term::of(ctx.key(tok)[dim], norms[tok]);
  return acc / static_cast<float>(n);
}

/// Mean and inverse standard deviation of one component over a segment, in double and in
/// slot order, rounded as the host executor rounds them. `stats` = {mean, inv_std}.
KVCAP_HOST_DEVICE inline void component_stats(const float* comp, index_t n, float* stats) {
  component_sums s;
  for (index_t tok = 0; tok < n; ++tok) s.add(comp[tok]);
  s.finish(n, stats);
}

/// The rank key of slot `tok`. Composite scorers read their components from `comps`
/// ((component, tok), n = length) and their statistics from `stats` ((component, 2)).
template <class Scorer, class Context>
KVCAP_HOST_DEVICE inline std::uint64_t rank_key_at(const Scorer& scorer, const Context& ctx, index_t tok,
                                                   const float* comps, const float* stats) {
  float score;
  if constexpr (composite_scorer<Scorer>) {
    constexpr index_t num = num_components_v<Scorer>;
    float z[num];
    for (index_t c = 0; c < num; ++c) z[c] = (comps[c * ctx.num_tokens() + tok] - stats[2 * c]) * stats[2 * c + 1];
    score = scorer.combine(ctx, tok, z);
  } else {
    (void)comps, (void)stats;
    score = scorer.score(ctx, tok);
  }
  return encode_rank(ctx.meta(tok).is_protected, sanitize_score(score), tok);
}

}  // namespace kvcap::device
