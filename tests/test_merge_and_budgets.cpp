// The merge reducer (hand-checked folds, size counts, conservation) and the budget
// controllers (layer schedules, byte budgets).
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "test_seed.hpp"

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

namespace {
/// The merge as its header states it, written plainly: every dropped slot, in ascending
/// order, folds into the candidate (nearest kept slot before and after, kept structure
/// neighbours) whose key has the highest cosine with its own (NaN as -inf, ties to the smaller
/// slot), size-weighted; later cosines see earlier folds. k, v: (slot, dim); returns the
/// kept slots' (index, size, k, v) in slot order.
template <class Structure>
std::vector<slot> plain_merge(std::vector<float> k, std::vector<float> v, const std::vector<token_meta>& meta,
                              const std::vector<bool>& kept, index_t d, const Structure& structure) {
  const auto n = static_cast<index_t>(kept.size());
  std::vector<std::int32_t> size(kept.size());
  for (index_t t = 0; t < n; ++t) size[t] = meta[t].size;
  const auto row = [&](std::vector<float>& x, index_t t) { return x.data() + t * d; };
  const auto cos = [&](index_t a, index_t b) {
    float aa = 0.f, bb = 0.f, ab = 0.f;
    for (index_t i = 0; i < d; ++i) aa += row(k, a)[i] * row(k, a)[i];
    for (index_t i = 0; i < d; ++i) bb += row(k, b)[i] * row(k, b)[i];
    for (index_t i = 0; i < d; ++i) ab += row(k, a)[i] * row(k, b)[i];
    const float denom = std::sqrt(aa) * std::sqrt(bb), c = denom > 0.f ? ab / denom : 0.f;
    return std::isnan(c) ? -HUGE_VALF : c;
  };
  for (index_t t = 0; t < n; ++t) {
    if (kept[t]) continue;
    std::vector<index_t> cand;
    for (index_t b = t - 1; b >= 0; --b)
      if (kept[b]) {
        cand.push_back(b);
        break;
      }
    for (index_t a = t + 1; a < n; ++a)
      if (kept[a]) {
        cand.push_back(a);
        break;
      }
    for (const grid_offset step : {grid_offset{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}}) {
      index_t index = 0;
      if (!structure.neighbour(meta[t].index, step, index)) continue;
      for (index_t s = 0; s < n; ++s)
        if (meta[s].index == index && kept[s]) cand.push_back(s);
    }
    index_t best = -1;
    float best_cos = 0.f;
    for (const index_t c : cand) {
      const float x = cos(t, c);
      if (best < 0 || x > best_cos || (x == best_cos && c < best)) best = c, best_cos = x;
    }
    if (best < 0) continue;
    const float wt = static_cast<float>(size[best]), wd = static_cast<float>(size[t]), inv = 1.f / (wt + wd);
    for (index_t i = 0; i < d; ++i) {
      row(k, best)[i] = (wt * row(k, best)[i] + wd * row(k, t)[i]) * inv;
      row(v, best)[i] = (wt * row(v, best)[i] + wd * row(v, t)[i]) * inv;
    }
    size[best] += size[t];
  }
  std::vector<slot> out;
  for (index_t t = 0; t < n; ++t)
    if (kept[t]) out.push_back({meta[t].index, size[t], {row(k, t), row(k, t) + d}, {row(v, t), row(v, t) + d}});
  return out;
}

/// One chunk of a structure's `n` tokens (1 kv-head, dim 8) compressed to `budget` with
/// merging, against plain_merge over the kept set the compressor chose: bit for bit.
template <class Scorer, class Structure>
void check_against_plain_merge(Scorer scorer, const Structure& structure, index_t budget, std::uint32_t seed) {
  constexpr index_t d = 8;
  const index_t n = structure.num_tokens();
  std::mt19937 rng(kvcap_test::shifted(seed));
  std::normal_distribution<float> g;
  std::vector<float> k(n * d), v(k.size());
  for (index_t t = 0; t < n; ++t)  // runs of similar keys, so cosines are close and folds chain
    for (index_t i = 0; i < d; ++i) {
      k[t * d + i] = (t > 0 && rng() % 3 != 0 ? k[(t - 1) * d + i] : 0.f) + g(rng);
      v[t * d + i] = g(rng);
    }
  std::vector<token_meta> meta;
  for (index_t t = 0; t < n; ++t) meta.push_back(structure.meta(t));
  host::compressor<float, layouts::nhd, Scorer, budgets::fixed_tokens, reducers::merge, Structure> c(
      {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = d, .max_chunk = n},
      {.scorer = scorer, .budget = {.tokens = budget}, .structure = structure});
  c.append(0, {k.data(), n, 1, d}, {v.data(), n, 1, d}, meta);
  c.compress(0);
  const auto& view = c.layer(0);
  REQUIRE(view.length == budget);
  std::vector<bool> kept(static_cast<std::size_t>(n), false);
  for (index_t t = 0; t < view.length; ++t) kept[view.meta_at(t, 0).index] = true;  // slot = index before compressing
  const std::vector<slot> want = plain_merge(k, v, meta, kept, d, structure);
  REQUIRE(static_cast<index_t>(want.size()) == budget);
  for (index_t t = 0; t < budget; ++t) {
    CAPTURE(t);
    const auto kk = view.key(t, 0), vv = view.value(t, 0);
    CHECK(view.meta_at(t, 0).index == want[t].index);
    CHECK(view.meta_at(t, 0).size == want[t].size);
    CHECK(std::vector<float>(kk.data, kk.data + d) == want[t].k);
    CHECK(std::vector<float>(vv.data, vv.data + d) == want[t].v);
  }
}
}  // namespace

TEST_CASE("merge agrees bit for bit with a plain merge: runs of drops, spread drops, grid neighbours") {
  const structures::sequence text{.length = 97};
  const structures::temporal_frames video{.frames = 6, .rows = 3, .cols = 5};
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    const index_t budget = 8 + static_cast<index_t>(seed * 7 % 40);
    check_against_plain_merge(scorers::recency{.num_sinks = 2}, text, budget, seed);  // one long run dropped
    check_against_plain_merge(scorers::key_diff{}, text, budget, seed);
    check_against_plain_merge(scorers::recency{.num_sinks = 3}, video, budget, seed);
    check_against_plain_merge(scorers::key_diff{}, video, budget, seed);
    check_against_plain_merge(scorers::temporal_redundancy{}, video, budget, seed);
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
  // Prefill 40 tokens in chunks of 5: compress brings each layer back to its own budget.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> k(5 * 2 * 4), v(k.size());
  for (index_t chunk = 0; chunk < 8; ++chunk) {
    std::vector<token_meta> meta(5);
    for (index_t t = 0; t < 5; ++t) {
      meta[t].index = chunk * 5 + t;
      meta[t].position = {static_cast<std::int32_t>(chunk * 5 + t), 0, 0};
    }
    for (index_t layer = 0; layer < 3; ++layer) {
      for (float& x : k) x = u(rng);
      for (float& x : v) x = u(rng);
      c.append(layer, {k.data(), 5, 2, 4}, {v.data(), 5, 2, 4}, meta);
      c.compress(layer);
      CHECK(c.length(layer) == std::min<index_t>((chunk + 1) * 5, c.budget(layer)));
    }
  }
  CHECK(c.length(0) == 26);
  CHECK(c.length(1) == 20);
  CHECK(c.length(2) == 14);
  CHECK(mr.peak_bytes() == storage + compressor::workspace_bytes(shape, 31));  // nothing allocated since
}
