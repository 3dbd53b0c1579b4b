#pragma once
// kvcap/scorers/concept.hpp — what a redundancy scorer must offer.
//
// A scorer maps one resident token of one kv-head to a keep-score: higher is kept first
// (ties and protection are settled by kvcap::ranks_before). It reads the token only
// through a score context, whose documented API is the archetype below; it declares
// up front which shared inputs it needs (`inputs`), so an executor computes them once per
// (layer, head) before scoring. Scorers are small trivially copyable aggregates whose
// `score` is callable on host and device; they never allocate.

#include <concepts>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/token_meta.hpp"
#include "../core/vector_math.hpp"
#include "../structures/concept.hpp"

namespace kvcap {

/// Shared per-(layer, head) inputs a scorer may ask for.
struct score_inputs {
  bool mean_unit_key = false;  ///< mean over resident tokens of k / |k|
  bool window_mass = false;    ///< attention mass of an observation window per token
};

namespace archetypes {
/// The score context's documented API and nothing else. Declared, never defined: it
/// exists so that `scorer` can check a scorer compiles against exactly this surface.
struct score_context {
  index_t num_tokens() const;   ///< resident tokens of this head, chunk included
  index_t head() const;         ///< kv-head being scored
  index_t head_dim() const;
  index_t next_index() const;   ///< logical index the next appended token will receive
  vector_ref<const float> key(index_t tok) const;
  vector_ref<const float> value(index_t tok) const;
  const token_meta& meta(index_t tok) const;
  vector_ref<const float> mean_unit_key() const;  ///< valid when inputs.mean_unit_key
  float window_mass(index_t tok) const;            ///< valid when inputs.window_mass
  /// The resident slot of the token `d` away from `tok` in the structure model; false if
  /// that token lies outside the grid or is not resident in this head.
  bool neighbour(index_t tok, grid_offset d, index_t& slot) const;
};
}  // namespace archetypes

template <class S>
concept scorer = std::is_trivially_copyable_v<S> &&
    requires(const S s, const archetypes::score_context& ctx, index_t tok) {
      { S::inputs } -> std::convertible_to<score_inputs>;
      { s.score(ctx, tok) } -> std::same_as<float>;
    };

/// A scorer made of several single scorers whose scores are normalised over the resident
/// tokens of a (layer, head) before they are combined (see scorers/blend.hpp). The
/// executor computes every component for every token, then each component's mean and
/// standard deviation, and calls `combine` with the z-scores.
template <class S>
concept composite_scorer = std::is_trivially_copyable_v<S> &&
    requires(const S s, const archetypes::score_context& ctx, index_t tok, const float* z) {
      { S::inputs } -> std::convertible_to<score_inputs>;
      { S::num_components } -> std::convertible_to<index_t>;
      { s.component(ctx, tok, index_t{}) } -> std::same_as<float>;
      { s.combine(ctx, tok, z) } -> std::same_as<float>;
    };

/// Anything an executor can rank tokens by.
template <class S>
concept any_scorer = scorer<S> || composite_scorer<S>;

/// Components an executor must hold per token for `S` (0 for a single scorer).
template <any_scorer S>
inline constexpr index_t num_components_v = [] {
  if constexpr (composite_scorer<S>) return static_cast<index_t>(S::num_components);
  else return index_t{0};
}();

}  // namespace kvcap
