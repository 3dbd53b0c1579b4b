// The observation-window scorer: the tiled window mass against a brute-force softmax, and a
// hand-checked kept set.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "test_seed.hpp"

namespace {
using namespace kvcap;

/// Brute force in double: mass[t] = mean over (window query j, q-head g of the group) of
/// softmax_t(q·k_t / sqrt(d)), query j seeing slots ≤ n − w + j when causal.
std::vector<double> brute_mass(const std::vector<float>& keys, index_t n, index_t d, const std::vector<float>& q,
                               index_t w, index_t group, bool causal) {
  std::vector<double> mass(n, 0.0);
  for (index_t j = 0; j < w; ++j)
    for (index_t g = 0; g < group; ++g) {
      const index_t end = causal ? n - w + j + 1 : n;
      std::vector<double> s(end);
      double m = -1e300, z = 0;
      for (index_t t = 0; t < end; ++t) {
        double dot = 0;
        for (index_t i = 0; i < d; ++i) dot += double(q[(j * group + g) * d + i]) * keys[t * d + i];
        s[t] = dot / std::sqrt(double(d));
        m = std::max(m, s[t]);
      }
      for (index_t t = 0; t < end; ++t) z += std::exp(s[t] - m);
      for (index_t t = 0; t < end; ++t) mass[t] += std::exp(s[t] - m) / z / double(w * group);
    }
  return mass;
}
}  // namespace

TEST_CASE("window mass in key tiles equals a brute-force softmax (GQA, causal and not, several tiles)") {
  constexpr index_t n = 600, d = 16, w = 5, kv_heads = 2, group = 3;  // 600 keys = 3 tiles of 256
  std::mt19937 rng(kvcap_test::shifted(3));
  std::normal_distribution<float> g;
  std::vector<float> k(n * kv_heads * d), v(k.size()), q(w * kv_heads * group * d);
  for (auto& x : k) x = g(rng);
  for (auto& x : v) x = g(rng);
  for (auto& x : q) x = 2.f * g(rng);
  const structures::sequence text{.length = n};
  std::vector<token_meta> meta;
  for (index_t t = 0; t < n; ++t) meta.push_back(text.meta(t));
  host::compressor<float, layouts::nhd, scorers::observation_window, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = kv_heads, .num_q_heads = kv_heads * group, .head_dim = d, .max_chunk = n,
       .max_window = w},
      {.scorer = {.pool_radius = 0}, .budget = {.tokens = n}});
  c.append(0, {k.data(), n, kv_heads, d}, {v.data(), n, kv_heads, d}, meta);

  host::window_mass_workspace ws;
  std::vector<std::byte> buffer(1 << 20);
  workspace_carver carver(buffer.data());
  ws = host::window_mass_workspace::carve(carver, w * group, d, n);
  REQUIRE(carver.bytes() <= buffer.size());
  const kv_tensor<const float> window{q.data(), w, kv_heads * group, d};
  for (const bool causal : {false, true})
    for (index_t head = 0; head < kv_heads; ++head) {
      host::window_mass(c.layer(0), head, window, causal, ws);
      // This head's keys and its group's queries, densely.
      std::vector<float> hk(n * d), hq(w * group * d);
      for (index_t t = 0; t < n; ++t)
        for (index_t i = 0; i < d; ++i) hk[t * d + i] = k[(t * kv_heads + head) * d + i];
      for (index_t j = 0; j < w; ++j)
        for (index_t gg = 0; gg < group; ++gg)
          for (index_t i = 0; i < d; ++i)
            hq[(j * group + gg) * d + i] = q[(j * kv_heads * group + head * group + gg) * d + i];
      const auto ref = brute_mass(hk, n, d, hq, w, group, causal);
      double total = 0;
      for (index_t t = 0; t < n; ++t) {
        CHECK(ws.mass[t] == doctest::Approx(ref[t]).epsilon(1e-4).scale(1e-6));
        total += ws.mass[t];
      }
      CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("observation_window keeps what the window attends to; ties go to the smaller index") {
  // One kv-head, dim 2, 2 query heads both (10, 0), one non-causal window query.
  // Keys t0 (1,0), t1 (0,1), t2 (−1,0), t3 (0,−1): t0 takes most mass, t1 and t3 tie
  // (dot 0), t2 least. Budget 2 keeps {0, 1}; budget 3 keeps {0, 1, 3}.
  const structures::sequence text{.length = 4};
  const std::vector<float> k = {1, 0, 0, 1, -1, 0, 0, -1}, v(8, 1.f), q = {10, 0, 10, 0};
  std::vector<token_meta> meta;
  for (index_t t = 0; t < 4; ++t) meta.push_back(text.meta(t));
  for (const index_t budget : {2, 3}) {
    host::compressor<float, layouts::hnd, scorers::observation_window, budgets::fixed_tokens> c(
        {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 2, .head_dim = 2, .max_chunk = 4, .max_window = 1},
        {.scorer = {.pool_radius = 0}, .budget = {.tokens = budget}});
    c.append(0, {k.data(), 4, 1, 2}, {v.data(), 4, 1, 2}, meta);
    c.compress(0, {q.data(), 1, 2, 2}, /*window_is_chunk_tail=*/false);
    std::vector<std::int64_t> kept;
    for (index_t t = 0; t < c.length(0); ++t) kept.push_back(c.layer(0).meta_at(t, 0).index);
    CHECK(kept == (budget == 2 ? std::vector<std::int64_t>{0, 1} : std::vector<std::int64_t>{0, 1, 3}));
  }
}

TEST_CASE("a window scorer without a window, or with too many queries, is a named error") {
  const structures::sequence text{.length = 4};
  const std::vector<float> k(8, 1.f), v(8, 1.f), q(3 * 2 * 2, 1.f);
  std::vector<token_meta> meta;
  for (index_t t = 0; t < 4; ++t) meta.push_back(text.meta(t));
  host::compressor<float, layouts::hnd, scorers::observation_window, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 2, .head_dim = 2, .max_chunk = 4, .max_window = 2},
      {.budget = {.tokens = 2}});
  c.append(0, {k.data(), 4, 1, 2}, {v.data(), 4, 1, 2}, meta);
  try {
    c.compress(0);
    FAIL("no error");
  } catch (const kvcap::error& e) {
    CHECK(e.argument() == "window");
  }
  try {
    c.compress(0, {q.data(), 3, 2, 2});
    FAIL("no error");
  } catch (const kvcap::error& e) {
    CHECK(e.argument() == "window.num_tokens");
    CHECK(e.expected().find("shape.max_window = 2") != std::string::npos);
  }
  CHECK(c.length(0) == 4);  // nothing was compressed by the failed calls
}
