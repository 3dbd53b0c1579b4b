#pragma once
// kvcap/scorers/blend.hpp — a weighted sum of two normalised scores.
//
// score = weight_a · z_a + weight_b · z_b, where z is a component's score standardised over
// the resident tokens of the (layer, head): (s − mean) / std, 0 when std is 0. Components
// must give finite scores: put sinks and recent windows in a forced_keep around the blend
// rather than inside it.

#include "concept.hpp"

namespace kvcap::scorers {

template <scorer A, scorer B>
struct blend {
  A a{};
  B b{};
  float weight_a = 0.5f, weight_b = 0.5f;

  static constexpr index_t num_components = 2;
  static constexpr score_inputs inputs{.mean_unit_key = A::inputs.mean_unit_key || B::inputs.mean_unit_key,
                                       .window_mass = A::inputs.window_mass || B::inputs.window_mass};
  template <class Context>
  KVCAP_HOST_DEVICE auto component(const Context& ctx, index_t tok, index_t c) const {
    return c == 0 ? a.score(ctx, tok) : b.score(ctx, tok);
  }
  template <class Context>
  KVCAP_HOST_DEVICE auto combine(const Context&, index_t, const float* z) const {
    return weight_a * z[0] + weight_b * z[1];
  }
};

}  // namespace kvcap::scorers
