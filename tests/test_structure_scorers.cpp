// Structure-aware scorers (temporal, spatial, pooled value norm), blends and forced keeps:
// exact kept sets on small hand-checked cases, run through the host compressor.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace {
using namespace kvcap;

/// Appends `keys`/`values` (one kv-head, dim 2) of the prompt described by `s` as one chunk
/// and compresses to `budget`; returns the kept logical indices of head 0.
template <class Scorer, class Structure, class Reducer = reducers::evict>
std::vector<std::int64_t> kept_after_one_chunk(const Structure& s, Scorer scorer, index_t budget,
                                               const std::vector<float>& keys, const std::vector<float>& values) {
  const index_t n = s.num_tokens();
  host::compressor<float, layouts::hnd, Scorer, budgets::fixed_tokens, Reducer, Structure> c(
      {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = n},
      {.scorer = scorer, .budget = {.tokens = budget}, .structure = s});
  std::vector<token_meta> meta;
  for (index_t t = 0; t < n; ++t) meta.push_back(s.meta(t));
  c.append(0, {keys.data(), n, 1, 2}, {values.data(), n, 1, 2}, meta);
  c.compress(0);
  std::vector<std::int64_t> kept;
  for (index_t t = 0; t < c.length(0); ++t) kept.push_back(c.layer(0).meta_at(t, 0).index);
  return kept;
}

using kept_set = std::vector<std::int64_t>;
}  // namespace

TEST_CASE("temporal_redundancy drops patches that repeat the previous frame") {
  // 3 frames × 1 row × 2 cols. Keys per token (frame, col):
  //   f0: (1,0) (0,1)       no earlier frame: score 0, 0
  //   f1: (1,0) (1,0)       vs f0: cos 1 → −1; cos((1,0),(0,1)) = 0 → 0
  //   f2: (0,1) (1,1)       vs f1: cos 0 → 0; cos((1,1),(1,0)) = 0.707 → −0.707
  // Scores: 0 0 −1 0 0 −0.707; budget 4 keeps the four zeros {0, 1, 3, 4}.
  const structures::temporal_frames video{.frames = 3, .rows = 1, .cols = 2};
  const std::vector<float> k = {1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1};
  const std::vector<float> v(12, 1.f);
  CHECK(kept_after_one_chunk(video, scorers::temporal_redundancy{}, 4, k, v) == kept_set{0, 1, 3, 4});
  // Budget 5: the least redundant of the two redundant tokens stays (−0.707 > −1).
  CHECK(kept_after_one_chunk(video, scorers::temporal_redundancy{}, 5, k, v) == kept_set{0, 1, 3, 4, 5});
}

TEST_CASE("temporal_redundancy looks further back when the previous frame's patch was evicted") {
  // 3 frames × 1 row × 2 cols. f0 = (1,0) (0,1); f1 = (1,0) (0,1) (both fully redundant, −1);
  // f2 = (1,0) (1,0). After f1 is evicted, f2's references are: lookback 1 → none (0, 0);
  // lookback 2 → f0: cos((1,0),(1,0)) = 1 → −1 for col 0 and cos((1,0),(0,1)) = 0 → 0 for col 1.
  const structures::temporal_frames video2{.frames = 3, .rows = 1, .cols = 2};
  const std::vector<float> k2 = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0}, v2(12, 1.f);
  for (const index_t lookback : {1, 2}) {
    host::compressor<float, layouts::hnd, scorers::temporal_redundancy, budgets::fixed_tokens, reducers::evict,
                     structures::temporal_frames>
        c({.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = 4},
          {.scorer = {.max_lookback = lookback}, .budget = {.tokens = 3}, .structure = video2});
    std::vector<token_meta> meta = {video2.meta(0), video2.meta(1), video2.meta(2), video2.meta(3)};
    c.append(0, {k2.data(), 4, 1, 2}, {v2.data(), 4, 1, 2}, meta);
    c.compress_to(0, 2);  // f1's two tokens score −1: kept {0, 1}
    REQUIRE(c.layer(0).meta_at(0, 0).index == 0);
    REQUIRE(c.layer(0).meta_at(1, 0).index == 1);
    meta = {video2.meta(4), video2.meta(5)};
    c.append(0, {k2.data() + 8, 2, 1, 2}, {v2.data() + 8, 2, 1, 2}, meta);
    c.compress(0);  // 4 resident, budget 3: one goes
    kept_set kept;
    for (index_t t = 0; t < c.length(0); ++t) kept.push_back(c.layer(0).meta_at(t, 0).index);
    // lookback 1: scores f0 0, 0; f2 0, 0 → all tie, the largest index (5) goes.
    // lookback 2: f2 col 0 = −1 goes.
    CHECK(kept == (lookback == 1 ? kept_set{0, 1, 4} : kept_set{0, 1, 5}));
  }
}

TEST_CASE("spatial_redundancy keeps the patches least like their grid neighbours") {
  // 2×2 grid. Keys t0 (1,0), t1 (1,0), t2 (0,1), t3 (1,1).
  //   t0: right t1 cos 1, down t2 cos 0        → −0.5
  //   t1: left t0 cos 1, down t3 cos 0.707     → −0.854
  //   t2: up t0 cos 0, right t3 cos 0.707      → −0.354
  //   t3: up t1 0.707, left t2 0.707           → −0.707
  // Budget 2 keeps t2 and t0.
  const structures::spatial_grid image{.rows = 2, .cols = 2};
  const std::vector<float> k = {1, 0, 1, 0, 0, 1, 1, 1}, v(8, 1.f);
  CHECK(kept_after_one_chunk(image, scorers::spatial_redundancy{}, 2, k, v) == kept_set{0, 2});
  CHECK(kept_after_one_chunk(image, scorers::spatial_redundancy{}, 3, k, v) == kept_set{0, 2, 3});
}

TEST_CASE("spatial_redundancy averages over the neighbours a patch has, not over four") {
  // 1×3 grid: a patch on the edge has one neighbour, the middle one two.
  //   t0 (1,0): right t1 cos 1              → −1
  //   t1 (1,0): left t0 cos 1, right t2 0   → −0.5
  //   t2 (0,1): left t1 cos 0               → 0
  // Budget 2 keeps {1, 2}. Dividing by four instead would score t0 and t1 alike (−0.25) and
  // keep {0, 2}.
  const structures::spatial_grid strip{.rows = 1, .cols = 3};
  const std::vector<float> k = {1, 0, 1, 0, 0, 1}, v(6, 1.f);
  CHECK(kept_after_one_chunk(strip, scorers::spatial_redundancy{}, 2, k, v) == kept_set{1, 2});
  CHECK(kept_after_one_chunk(strip, scorers::spatial_redundancy{}, 1, k, v) == kept_set{2});
}

TEST_CASE("pooled_value_norm ranks by the mean value norm of the neighbourhood") {
  // 1×3 grid, value norms 1, 6, 2 (values (1,0), (6,0), (0,2)); radius 1:
  //   t0: (1 + 6) / 2 = 3.5   t1: (1 + 6 + 2) / 3 = 3   t2: (6 + 2) / 2 = 4
  // Budget 2 keeps {0, 2}; plain value_norm would keep {1, 2}.
  const structures::spatial_grid image{.rows = 1, .cols = 3};
  const std::vector<float> k = {1, 0, 1, 0, 1, 0}, v = {1, 0, 6, 0, 0, 2};
  CHECK(kept_after_one_chunk(image, scorers::pooled_value_norm{.radius = 1}, 2, k, v) == kept_set{0, 2});
  CHECK(kept_after_one_chunk(image, scorers::value_norm{}, 2, k, v) == kept_set{1, 2});
}

TEST_CASE("blend combines z-normalised scores") {
  // Key norms 1, 2, 3 → key_norm scores −1, −2, −3 → z = +1.22, 0, −1.22.
  // Value norms 3, 1, 2 → value_norm scores → z = +1.22, −1.22, 0.
  const structures::sequence text{.length = 3};
  const std::vector<float> k = {1, 0, 2, 0, 3, 0}, v = {3, 0, 1, 0, 2, 0};
  using both = scorers::blend<scorers::key_norm, scorers::value_norm>;
  // Weights (1, 0) and (0, 1) reproduce the components' own choices.
  CHECK(kept_after_one_chunk(text, both{.weight_a = 1, .weight_b = 0}, 1, k, v) == kept_set{0});
  CHECK(kept_after_one_chunk(text, both{.weight_a = 1, .weight_b = 0}, 2, k, v) == kept_set{0, 1});
  CHECK(kept_after_one_chunk(text, both{.weight_a = 0, .weight_b = 1}, 2, k, v) == kept_set{0, 2});
  // Equal weights: t0 1.22, t1 −0.61, t2 −0.61: the tie goes to the smaller index.
  CHECK(kept_after_one_chunk(text, both{}, 2, k, v) == kept_set{0, 1});
  // Weights (0.2, 0.8): t1 = −0.98, t2 = −0.24 → keep {0, 2}.
  CHECK(kept_after_one_chunk(text, both{.weight_a = 0.2f, .weight_b = 0.8f}, 2, k, v) == kept_set{0, 2});
}

TEST_CASE("component_sums: the mean and 1/std over the slots, the population's") {
  component_sums sums;
  for (const float c : {1.f, 2.f, 3.f}) sums.add(c);
  float stats[2];
  sums.finish(3, stats);
  CHECK(stats[0] == 2.f);
  CHECK(stats[1] == doctest::Approx(1.0 / std::sqrt(2.0 / 3.0)).epsilon(1e-6));  // variance 2/3, not 1
  component_sums flat;
  for (int i = 0; i < 4; ++i) flat.add(7.f);
  flat.finish(4, stats);
  CHECK(stats[0] == 7.f);
  CHECK(stats[1] == 0.f);  // no spread: every z is 0
}

TEST_CASE("blend: a component's z-scores do not see its shift or scale") {
  // Key norms 1, 2, 3 → key_norm z = (+1.22, 0, −1.22). Value norms 3, 1, 2, or shifted by 10,
  // or scaled by 10 → value_norm z = (+1.22, −1.22, 0) each time. Weights (0.4, 0.6):
  // t1 = −0.73, t2 = −0.49, so budget 2 keeps {0, 2} for all three. (A variance formula that
  // saw the mean, such as sum_sq / (n − 1) − mean², shrinks the shifted z to (0.12, −0.12, 0)
  // and keeps {0, 1}.)
  const structures::sequence text{.length = 3};
  const std::vector<float> k = {1, 0, 2, 0, 3, 0};
  using both = scorers::blend<scorers::key_norm, scorers::value_norm>;
  const both weights{.weight_a = 0.4f, .weight_b = 0.6f};
  for (const std::vector<float>& v : {std::vector<float>{3, 0, 1, 0, 2, 0}, std::vector<float>{13, 0, 11, 0, 12, 0},
                                      std::vector<float>{30, 0, 10, 0, 20, 0}})
    CHECK(kept_after_one_chunk(text, weights, 2, k, v) == kept_set{0, 2});
}

TEST_CASE("forced_keep adds sinks and a recent window to any scorer") {
  // Key norms 5, 1, 2, 9: key_norm alone keeps {1, 2} at budget 2.
  const structures::sequence text{.length = 4};
  const std::vector<float> k = {5, 0, 1, 0, 2, 0, 9, 0}, v(8, 1.f);
  CHECK(kept_after_one_chunk(text, scorers::key_norm{}, 2, k, v) == kept_set{1, 2});
  using forced = scorers::forced_keep<scorers::key_norm>;
  CHECK(kept_after_one_chunk(text, forced{.num_sinks = 1, .num_recent = 1}, 2, k, v) == kept_set{0, 3});
  CHECK(kept_after_one_chunk(text, forced{.num_sinks = 1, .num_recent = 1}, 3, k, v) == kept_set{0, 1, 3});
  // Around a composite scorer, too.
  using forced_blend = scorers::forced_keep<scorers::blend<scorers::key_norm, scorers::value_norm>>;
  CHECK(kept_after_one_chunk(text, forced_blend{.num_sinks = 0, .num_recent = 2}, 2, k, v) == kept_set{2, 3});
}

TEST_CASE("compress_to at the end is the offline oracle: the top M of the whole prompt") {
  // 40 tokens in chunks of 8. A budget that holds the whole prompt keeps everything; one
  // compress_to(10) at the end must keep the 10 best key_diff scores over all 40 tokens,
  // computed here by brute force (anchor = mean unit key of the prompt). Online compression
  // to 10 after every chunk scores against partial anchors and keeps a different set.
  const structures::sequence text{.length = 40};
  std::vector<float> k(80), v(80);
  for (int i = 0; i < 80; ++i) k[i] = std::sin(0.7f * i) + 0.1f * (i % 7), v[i] = std::cos(0.3f * i);
  using comp = host::compressor<float, layouts::hnd, scorers::key_diff, budgets::fixed_tokens>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = 8};
  comp full(shape, {.budget = {.tokens = 40}}), online(shape, {.budget = {.tokens = 10}});
  for (index_t begin = 0; begin < 40; begin += 8) {
    std::vector<token_meta> meta;
    for (index_t t = begin; t < begin + 8; ++t) meta.push_back(text.meta(t));
    for (comp* c : {&full, &online}) {
      c->append(0, {k.data() + 2 * begin, 8, 1, 2}, {v.data() + 2 * begin, 8, 1, 2}, meta);
      c->compress(0);
    }
  }
  CHECK(full.length(0) == 40);  // the whole prompt fits: nothing dropped
  full.compress_to(0, 10);
  const auto kept = [](const comp& c) {
    kept_set out;
    for (index_t t = 0; t < c.length(0); ++t) out.push_back(c.layer(0).meta_at(t, 0).index);
    return out;
  };
  // Brute force, in double: score = −cos(k, anchor); the 10 highest, ties to the smaller index.
  double anchor[2] = {0, 0};
  for (int t = 0; t < 40; ++t)
    for (int i = 0; i < 2; ++i) anchor[i] += k[2 * t + i] / std::hypot(k[2 * t], k[2 * t + 1]) / 40;
  std::vector<std::pair<double, int>> scores;
  for (int t = 0; t < 40; ++t)
    scores.push_back({-(k[2 * t] * anchor[0] + k[2 * t + 1] * anchor[1]) /
                          (std::hypot(k[2 * t], k[2 * t + 1]) * std::hypot(anchor[0], anchor[1])),
                      t});
  std::sort(scores.begin(), scores.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  REQUIRE(scores[9].first - scores[10].first > 1e-4);  // no near tie at the cut
  kept_set top;
  for (int i = 0; i < 10; ++i) top.push_back(scores[i].second);
  std::sort(top.begin(), top.end());
  CHECK(kept(full) == top);
  CHECK(kept(online).size() == 10);
  CHECK(kept(online) != top);  // so the comparison above can tell the oracle from online
  CHECK_THROWS_AS(full.compress_to(0, 41), kvcap::error);  // above the budget
}
