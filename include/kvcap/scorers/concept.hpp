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

namespace kvcap {

/// Shared per-(layer, head) inputs a scorer may ask for.
struct score_inputs {
  bool mean_unit_key = false;  ///< mean over resident tokens of k / |k|
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
};
}  // namespace archetypes

template <class S>
concept scorer = std::is_trivially_copyable_v<S> &&
    requires(const S s, const archetypes::score_context& ctx, index_t tok) {
      { S::inputs } -> std::convertible_to<score_inputs>;
      { s.score(ctx, tok) } -> std::same_as<float>;
    };

}  // namespace kvcap
