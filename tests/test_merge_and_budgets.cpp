// The merge reducer (hand-checked folds, size counts, conservation) and the budget
// controllers (layer schedules, byte budgets).
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace {
using namespace kvcap;

struct slot {
  std::int64_t index;
  std::int32_t size;
  std::vector<float> k, v;
};

/// One chunk of `n` tokens (1 kv-head, dim 2) through recency (sinks `sinks`) + merge.
std::vector<slot> merge_once(const std::vector<float>& k, const std::vector<float>& v, index_t n, index_t budget,
                             index_t sinks) {
  const structures::sequence text{.length = n};
  host::compressor<float, layouts::nhd, scorers::recency, budgets::fixed_tokens, reducers::merge> c(
      {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = n},
      {.scorer = {.num_sinks = sinks}, .budget = {.tokens = budget}});
  std::vector<token_meta> meta;
  for (index_t t = 0; t < n; ++t) meta.push_back(text.meta(t));
  c.append(0, {k.data(), n, 1, 2}, {v.data(), n, 1, 2}, meta);
  c.compress(0);
  std::vector<slot> out;
  const auto& view = c.layer(0);
  for (index_t t = 0; t < view.length; ++t) {
    const auto kk = view.key(t, 0), vv = view.value(t, 0);
    out.push_back({view.meta_at(t, 0).index, view.meta_at(t, 0).size, {kk[0], kk[1]}, {vv[0], vv[1]}});
  }
  return out;
}
}  // namespace

TEST_CASE("merge folds a dropped token into its most similar kept neighbour, weighted by size") {
  // Recency with 1 sink keeps t0 (sink) and t2 (newest); t1 = (0.1, 1) is dropped. Its
  // kept neighbours are t0 (1, 0): cos 0.0995, and t2 (0, 1): cos 0.995 → into t2:
  // k = ((0, 1) + (0.1, 1)) / 2 = (0.05, 1), v = ((4, 4) + (2, 2)) / 2 = (3, 3), size 2.
  const std::vector<float> k = {1, 0, 0.1f, 1, 0, 1}, v = {1, 1, 2, 2, 4, 4};
  const auto kept = merge_once(k, v, 3, 2, 1);
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].index == 0);
  CHECK(kept[0].size == 1);
  CHECK(kept[0].k == std::vector<float>{1, 0});
  CHECK(kept[1].index == 2);
  CHECK(kept[1].size == 2);
  CHECK(kept[1].k[0] == doctest::Approx(0.05f));
  CHECK(kept[1].k[1] == doctest::Approx(1.f));
  CHECK(kept[1].v == std::vector<float>{3, 3});
}

TEST_CASE("merge keeps the total size and the size-weighted sum of values") {
  // Randomized: whatever is merged where, Σ size = tokens seen and Σ size·v is conserved
  // (each fold replaces s_t·v_t + s_d·v_d by (s_t + s_d)·average), up to float rounding.
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  const structures::temporal_frames video{.frames = 8, .rows = 3, .cols = 4};
  const index_t n = video.num_tokens(), d = 8, heads = 2, chunk = 12;
  std::vector<float> k(n * heads * d), v(k.size());
  for (auto& x : k) x = g(rng);
  for (auto& x : v) x = g(rng);
  host::compressor<float, layouts::hnd, scorers::key_diff, budgets::fixed_tokens, reducers::merge,
                   structures::temporal_frames>
      c({.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = d, .max_chunk = chunk},
        {.budget = {.tokens = 20}, .structure = video});
  std::vector<double> v_sum(heads * d, 0.0);
  for (index_t begin = 0; begin < n; begin += chunk) {
    std::vector<token_meta> meta;
    for (index_t t = begin; t < begin + chunk; ++t) meta.push_back(video.meta(t));
    c.append(0, {k.data() + begin * heads * d, chunk, heads, d}, {v.data() + begin * heads * d, chunk, heads, d}, meta);
    c.compress(0);
  }
  for (index_t t = 0; t < n; ++t)
    for (index_t h = 0; h < heads; ++h)
      for (index_t i = 0; i < d; ++i) v_sum[h * d + i] += v[(t * heads + h) * d + i];
  const auto& view = c.layer(0);
  REQUIRE(view.length == 20);
  for (index_t h = 0; h < heads; ++h) {
    std::int64_t sizes = 0;
    std::vector<double> got(d, 0.0);
    for (index_t t = 0; t < view.length; ++t) {
      sizes += view.meta_at(t, h).size;
      for (index_t i = 0; i < d; ++i) got[i] += view.meta_at(t, h).size * double(view.value(t, h)[i]);
    }
    CHECK(sizes == n);
    for (index_t i = 0; i < d; ++i) CHECK(got[i] == doctest::Approx(v_sum[h * d + i]).epsilon(1e-4));
  }
}

TEST_CASE("layer schedules share a total exactly") {
  const cache_shape shape{.num_layers = 5, .num_kv_heads = 2, .head_dim = 64, .element_bytes = 2};
  const auto tokens = [&](const auto& b) {
    std::vector<index_t> t;
    for (index_t l = 0; l < shape.num_layers; ++l) t.push_back(b.tokens_for(l, shape));
    return t;
  };
  CHECK(tokens(budgets::uniform_layers{.total_tokens = 12}) == std::vector<index_t>{3, 3, 2, 2, 2});
  // Pyramid 1000 over 5 layers, last = first / 4: weights 1, .8125, .625, .4375, .25 (sum
  // 3.125) → 320, 260, 200, 140, 80.
  CHECK(tokens(budgets::pyramid_layers{.total_tokens = 1000, .last_to_first = 0.25}) ==
        std::vector<index_t>{320, 260, 200, 140, 80});
  for (const index_t total : {7, 99, 1001, 4096}) {
    const auto t = tokens(budgets::pyramid_layers{.total_tokens = total, .last_to_first = 0.5});
    CHECK(std::accumulate(t.begin(), t.end(), index_t{0}) == total);
    for (std::size_t l = 1; l < t.size(); ++l) CHECK(t[l] <= t[l - 1] + 1);  // non-increasing up to rounding
  }
  const index_t list[] = {5, 6, 7, 8, 9};
  CHECK(tokens(budgets::explicit_layers{.tokens = list}) == std::vector<index_t>{5, 6, 7, 8, 9});
  // Bytes: K + V of one token of one layer = 2 · 2 heads · 64 · 2 bytes = 512.
  CHECK(budgets::fixed_bytes{.bytes_per_layer = 512 * 100 + 511}.tokens_for(0, shape) == 100);
  CHECK(budgets::total_bytes{.bytes = 5 * 512 * 100}.tokens_for(3, shape) == 100);
}

TEST_CASE("a pyramid schedule gives each layer its own capacity and the peak follows") {
  host::counting_resource mr;
  using compressor = host::compressor<float, layouts::hnd, scorers::key_norm, budgets::pyramid_layers>;
  const host::compressor_shape shape{.num_layers = 3, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 4, .max_chunk = 5};
  compressor c(shape, {.budget = {.total_tokens = 60, .last_to_first = 0.5}}, &mr);
  // weights 1, .75, .5 (sum 2.25): 26.67 → 26, 46.67 → 20 (cumulative floors 26, 46, 60) → 26, 20, 14.
  CHECK(c.budget(0) == 26);
  CHECK(c.budget(1) == 20);
  CHECK(c.budget(2) == 14);
  const std::size_t slot = 2 * (2 * 4 * sizeof(float) + sizeof(token_meta));
  const std::size_t storage = (26 + 5 + 20 + 5 + 14 + 5) * slot;
  CHECK(mr.peak_bytes() == storage + compressor::workspace_bytes(shape, 31));
}
