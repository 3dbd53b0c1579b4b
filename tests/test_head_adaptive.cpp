// Per-head variable-length caches (layouts::varlen) and head-adaptive budgets
// (budgets::head_adaptive): hand-checked shares, agreement with a brute-force reference,
// packing, and the peak.
#include <doctest/doctest.h>

#include <kvcap.hpp>
#include <kvcap/budgets/head_adaptive.hpp>
#include <kvcap/layouts/varlen.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "test_seed.hpp"

namespace {
using namespace kvcap;

template <class Budget, class Scorer = scorers::key_norm>
using varlen_compressor = host::compressor<float, layouts::varlen, Scorer, Budget>;

/// The kept logical indices of each head.
template <class C>
std::vector<std::vector<std::int64_t>> kept_sets(const C& c, index_t layer, index_t heads) {
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(heads));
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < c.length(layer, h); ++t) out[h].push_back(c.layer(layer).meta_at(t, h).index);
  return out;
}

/// The hand-checked cases' prompt, appended in one chunk: 6 tokens, 2 heads of dim 1, head 0's
/// keys 1 2 3 4 5 6, head 1's keys 10 20 30 40 50 60, every value 1.
constexpr host::compressor_shape six_tokens_shape{
    .num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1, .max_chunk = 6};
void append_six_tokens(varlen_compressor<budgets::head_adaptive>& c) {
  const std::vector<float> k = {1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60};  // (tok, head, dim=1)
  const std::vector<float> v(12, 1.f);
  const structures::sequence text{.length = 6};
  std::vector<token_meta> meta;
  for (index_t t = 0; t < 6; ++t) meta.push_back(text.meta(t));
  c.append(0, {k.data(), 6, 2, 1}, {v.data(), 6, 2, 1}, meta);
}
}  // namespace

TEST_CASE("head_adaptive shares the layer total by score, with a floor per head") {
  // 2 heads, dim 1, key_norm (keep low |k|). 6 tokens. Head 0 keys: 1 2 3 4 5 6;
  // head 1 keys: 10 20 30 40 50 60. Budget 3 per head = 6 in all, floor 1 (fraction 1/3).
  // Floors: head 0 keeps t0 (|k| 1), head 1 keeps t0 (10). Remaining 4 go to the best of
  // the rest across heads: head 0's 2 3 4 5 (scores −2..−5) beat head 1's 20.. (−20..).
  // Head 0 keeps {0,1,2,3,4}, head 1 keeps {0}.
  varlen_compressor<budgets::head_adaptive> c(six_tokens_shape,
                                              {.budget = {.tokens = 3, .min_head_fraction = 1.0 / 3.0}});
  append_six_tokens(c);
  c.compress(0);
  const auto kept = kept_sets(c, 0, 2);
  CHECK(kept[0] == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(kept[1] == std::vector<std::int64_t>{0});
  CHECK(c.length(0, 0) == 5);
  CHECK(c.length(0, 1) == 1);
  CHECK(c.length(0) == 5);
  // Keys moved with their tokens: head 1's only key is 10, head 0's are 1..5.
  CHECK(c.layer(0).key(0, 1)[0] == 10.f);
  for (index_t t = 0; t < 5; ++t) CHECK(c.layer(0).key(t, 0)[0] == static_cast<float>(t + 1));
  // Packed: head 1 starts right after head 0's 5 tokens and max_chunk (6) free slots.
  CHECK(c.layer(0).mapping.head_begin(1) == 5 + 6);
  // The next chunk fits in each head's room; a uniform per-head cap of 3 would have been
  // the only alternative without per-head lengths.
  std::vector<token_meta> next;
  for (index_t t = 0; t < 6; ++t) next.push_back(structures::sequence{.length = 12}.meta(6 + t));
  const std::vector<float> k2 = {0.5f, 0.5f, 7, 70, 8, 80, 9, 90, 11, 0.25f, 12, 100}, v(12, 1.f);
  c.append(0, {k2.data(), 6, 2, 1}, {v.data(), 6, 2, 1}, next);
  CHECK(c.length(0, 0) == 11);
  CHECK(c.length(0, 1) == 7);
  c.compress(0);
  // Pool: head 0 has 1 2 3 4 5 | 0.5 7 8 9 11 12, head 1 has 10 | 0.5 70 80 90 0.25 100.
  // Floors: head 0 keeps 0.5 (t6), head 1 keeps 0.25 (t10). Remaining 4 by |k| across heads:
  // head 0's 1 2 3, head 1's 0.5 (t6): both |k| 0.5 < 1.  → head 0 {0,1,2,6}, head 1 {6,10}.
  const auto kept2 = kept_sets(c, 0, 2);
  CHECK(kept2[0] == std::vector<std::int64_t>{0, 1, 2, 6});
  CHECK(kept2[1] == std::vector<std::int64_t>{6, 10});
}

TEST_CASE("head_adaptive agrees with a brute-force joint selection over random runs") {
  std::mt19937 rng(kvcap_test::shifted(5));
  std::normal_distribution<float> g;
  for (int trial = 0; trial < 200; ++trial) {
    const index_t heads = 1 + static_cast<index_t>(rng() % 4), dim = 1 + static_cast<index_t>(rng() % 6);
    const index_t budget = 2 + static_cast<index_t>(rng() % 12), chunk = 1 + static_cast<index_t>(rng() % 10);
    const double fraction = (rng() % 5) / 4.0;
    const index_t floor = static_cast<index_t>(static_cast<double>(budget) * fraction);
    const index_t total = 10 + static_cast<index_t>(rng() % 60);
    varlen_compressor<budgets::head_adaptive, scorers::key_norm> c(
        {.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim, .max_chunk = chunk},
        {.budget = {.tokens = budget, .min_head_fraction = fraction}});
    // Reference: per head, the map index → key norm score of what is resident.
    std::vector<std::map<std::int64_t, float>> resident(static_cast<std::size_t>(heads));
    const structures::sequence text{.length = total};
    for (index_t begin = 0; begin < total; begin += chunk) {
      const index_t n = std::min(chunk, total - begin);
      std::vector<float> k(n * heads * dim), v(k.size(), 1.f);
      for (auto& x : k) x = std::round(4 * g(rng)) / 4;  // quarter steps: plenty of ties
      std::vector<token_meta> meta;
      for (index_t t = 0; t < n; ++t) meta.push_back(text.meta(begin + t));
      c.append(0, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
      for (index_t h = 0; h < heads; ++h)
        for (index_t t = 0; t < n; ++t) {
          float sq = 0;
          for (index_t i = 0; i < dim; ++i) sq += k[(t * heads + h) * dim + i] * k[(t * heads + h) * dim + i];
          resident[h][begin + t] = -std::sqrt(sq);
        }
      c.compress(0);
      // Brute force: floors per head, then the best remaining (score desc, index asc, head asc).
      std::size_t all = 0;
      for (const auto& r : resident) all += r.size();
      if (all > static_cast<std::size_t>(budget * heads)) {
        std::set<std::pair<index_t, std::int64_t>> keep;
        struct cand {
          float score;
          std::int64_t index;
          index_t head;
        };
        std::vector<cand> rest;
        for (index_t h = 0; h < heads; ++h) {
          std::vector<cand> mine;
          for (const auto& [index, score] : resident[h]) mine.push_back({score, index, h});
          std::sort(mine.begin(), mine.end(), [](const cand& a, const cand& b) {
            return a.score != b.score ? a.score > b.score : a.index < b.index;
          });
          const auto f = std::min<std::size_t>(mine.size(), static_cast<std::size_t>(std::min(floor, budget)));
          for (std::size_t i = 0; i < mine.size(); ++i)
            (i < f ? (void)keep.insert({h, mine[i].index}) : rest.push_back(mine[i]));
        }
        std::sort(rest.begin(), rest.end(), [](const cand& a, const cand& b) {
          if (a.score != b.score) return a.score > b.score;
          if (a.index != b.index) return a.index < b.index;
          return a.head < b.head;
        });
        const std::size_t extra = static_cast<std::size_t>(budget * heads) - keep.size();
        for (std::size_t i = 0; i < std::min(extra, rest.size()); ++i) keep.insert({rest[i].head, rest[i].index});
        for (index_t h = 0; h < heads; ++h)
          for (auto it = resident[h].begin(); it != resident[h].end();)
            it = keep.count({h, it->first}) ? std::next(it) : resident[h].erase(it);
      }
      std::size_t slots = 0;
      for (index_t h = 0; h < heads; ++h) {
        std::vector<std::int64_t> expected;
        for (const auto& [index, score] : resident[h]) expected.push_back(index);
        std::vector<std::int64_t> got;
        for (index_t t = 0; t < c.length(0, h); ++t) got.push_back(c.layer(0).meta_at(t, h).index);
        INFO("trial ", trial, " head ", h, " after chunk at ", begin);
        REQUIRE(got == expected);
        slots += got.size();
      }
      REQUIRE(slots <= static_cast<std::size_t>(budget * heads));  // the layer's invariant
    }
  }
}

TEST_CASE("head_adaptive compress_to(M) is the policy at budget M: the floor is a share of M") {
  // The first case's tokens (head 0 keys 1..6, head 1 keys 10..60), fraction 1/3, in a cache
  // that holds the whole prompt (budget 6), then one compress_to(3): the offline oracle.
  // The floor must be ⌊3/3⌋ = 1 as for a budget of 3, not ⌊6/3⌋ = 2 from the construction
  // budget (which would keep head 0 {0..3} and head 1 {0, 1}).
  varlen_compressor<budgets::head_adaptive> full(six_tokens_shape,
                                                 {.budget = {.tokens = 6, .min_head_fraction = 1.0 / 3.0}});
  append_six_tokens(full);
  full.compress(0);
  CHECK(full.length(0, 0) == 6);  // the whole prompt fits
  full.compress_to(0, 3);
  const auto kept = kept_sets(full, 0, 2);
  CHECK(kept[0] == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(kept[1] == std::vector<std::int64_t>{0});
}

TEST_CASE("head_adaptive compress_to(M) keeps what a budget-M cache keeps, over random prompts") {
  // One chunk of the whole prompt: a cache built with budget M and compressed once must keep
  // the same (head, token) set as a cache built with the whole prompt's budget and compressed
  // to M. Checked with key_diff (cosines, comparable across heads) and every floor fraction.
  std::mt19937 rng(kvcap_test::shifted(11));
  std::normal_distribution<float> g;
  using comp = varlen_compressor<budgets::head_adaptive, scorers::key_diff>;
  for (int trial = 0; trial < 200; ++trial) {
    const index_t heads = 1 + static_cast<index_t>(rng() % 4), dim = 1 + static_cast<index_t>(rng() % 6);
    const index_t n = 4 + static_cast<index_t>(rng() % 60), budget = 1 + static_cast<index_t>(rng() % (n - 1));
    const double fraction = (rng() % 5) / 4.0;
    const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads,
                                       .head_dim = dim, .max_chunk = n};
    comp online(shape, {.budget = {.tokens = budget, .min_head_fraction = fraction}});
    comp oracle(shape, {.budget = {.tokens = n, .min_head_fraction = fraction}});
    std::vector<float> kk(n * heads * dim), vv(kk.size());
    for (auto& x : kk) x = std::round(4 * g(rng)) / 4;  // quarter steps: ties
    for (auto& x : vv) x = g(rng);
    const structures::sequence text{.length = n};
    std::vector<token_meta> m;
    for (index_t t = 0; t < n; ++t) m.push_back(text.meta(t));
    for (comp* c : {&online, &oracle}) c->append(0, {kk.data(), n, heads, dim}, {vv.data(), n, heads, dim}, m);
    online.compress(0);
    oracle.compress_to(0, budget);
    INFO("trial ", trial, ": heads ", heads, ", n ", n, ", budget ", budget, ", fraction ", fraction);
    REQUIRE(kept_sets(oracle, 0, heads) == kept_sets(online, 0, heads));
  }
}

TEST_CASE("a per-head layout costs the same storage as a uniform one, plus its offsets") {
  host::counting_resource varlen_mr, uniform_mr;
  const host::compressor_shape shape{.num_layers = 3, .num_kv_heads = 4, .num_q_heads = 8, .head_dim = 16,
                                     .max_chunk = 20};
  using adaptive = host::compressor<float, layouts::varlen, scorers::key_diff, budgets::head_adaptive>;
  using uniform = host::compressor<float, layouts::hnd, scorers::key_diff, budgets::fixed_tokens>;
  const adaptive a(shape, {.budget = {.tokens = 50}}, &varlen_mr);
  const uniform u(shape, {.budget = {.tokens = 50}}, &uniform_mr);
  const std::size_t slot = 2 * 16 * sizeof(float) + sizeof(token_meta);
  const std::size_t storage = 3 * 4 * (50 + 20) * slot;
  CHECK(u.memory().storage_bytes == storage);
  CHECK(a.memory().storage_bytes == storage + 3 * (2 * 4 + 1) * sizeof(index_t));
  // key_diff reads no per-head scratch, so the longest head (4 · (50 − 12) + 12 + 20 = 184) adds nothing here.
  CHECK(adaptive::head_capacity(shape, 50, {.tokens = 50}) == 184);
  CHECK(varlen_mr.peak_bytes() == a.memory().storage_bytes + adaptive::workspace_bytes(shape, 70, 184));
}

namespace {
/// Chunks of 64, 16 and 16 tokens through a 2-head head_adaptive layer (budget 48 per head,
/// floor 0, max_chunk 16): head 0's keys and values all score alike, head 1 has one strong
/// key, so the heads' lengths drift apart. Returns the most tokens one head held.
template <class Scorer>
index_t drift_heads(Scorer scorer, bool windowed) {
  constexpr index_t heads = 2, dim = 4, budget = 48, chunk = 16;
  using comp = host::compressor<float, layouts::varlen, Scorer, budgets::head_adaptive>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim,
                                     .max_chunk = chunk, .max_window = 4};
  const budgets::head_adaptive budget_policy{.tokens = budget, .min_head_fraction = 0.0};
  comp c(shape, {.scorer = scorer, .budget = budget_policy});
  const index_t bound = comp::head_capacity(shape, budget, budget_policy);
  CHECK(bound == heads * budget + chunk);  // floor 0: one head may hold the whole total, plus a chunk
  std::vector<float> q(4 * heads * dim, 0.f);
  for (index_t j = 0; j < 4; ++j)
    for (index_t h = 0; h < heads; ++h) q[(j * heads + h) * dim] = 1.f;
  const structures::sequence text{.length = 1000};
  index_t next = 0, longest = 0;
  for (const index_t n : {64, 16, 16}) {
    std::vector<float> k(n * heads * dim, 0.f), v(k.size(), 0.f);
    std::vector<token_meta> meta;
    for (index_t t = 0; t < n; ++t) {
      meta.push_back(text.meta(next + t));
      k[(t * heads + 0) * dim] = 1.f, v[(t * heads + 0) * dim] = 1.f + 0.01f * static_cast<float>(t);
      k[(t * heads + 0) * dim + 1] = 0.001f * static_cast<float>(t);
      k[(t * heads + 1) * dim] = next + t == 0 ? 8.f : -4.f, v[(t * heads + 1) * dim] = 0.001f;
    }
    c.append(0, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
    next += n;
    for (index_t h = 0; h < heads; ++h) {
      longest = std::max(longest, c.length(0, h));
      CHECK(c.length(0, h) <= bound);
    }
    if (windowed) c.compress(0, {q.data(), 4, heads, dim});
    else c.compress(0);
    CHECK(c.length(0, 0) + c.length(0, 1) <= heads * budget);
  }
  return longest;
}
}  // namespace

TEST_CASE("head_adaptive: a head longer than budget + max_chunk is scored within the workspace") {
  // The scratch a head's scores read (window mass, blend components) is sized for the longest
  // head, not for budget + max_chunk = 64: under the sanitizers a smaller one overflows here.
  SUBCASE("observation window") {
    CHECK(drift_heads(scorers::observation_window{.pool_radius = 0}, true) > 64);
  }
  SUBCASE("blend of two scores") {
    CHECK(drift_heads(scorers::blend<scorers::value_norm, scorers::key_norm>{.weight_a = 1.f, .weight_b = 0.f}, false) >
          64);
  }
}

TEST_CASE("head_adaptive: the longest head reaches heads · (budget − floor) + floor + max_chunk") {
  // 2 heads, budget 4, floor 1, max_chunk 2: the bound is 2 · 3 + 1 + 2 = 9. key_norm keeps
  // low |k|: head 0's keys are all small, head 1's large, so head 1 is cut to its floor.
  using comp = varlen_compressor<budgets::head_adaptive>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1,
                                     .max_chunk = 2};
  const budgets::head_adaptive budget{.tokens = 4, .min_head_fraction = 0.25};
  REQUIRE(comp::head_capacity(shape, 4, budget) == 9);
  comp c(shape, {.budget = budget});
  const structures::sequence text{.length = 100};
  index_t next = 0;
  auto append = [&](index_t n) {
    std::vector<float> k, v(static_cast<std::size_t>(2 * n), 1.f);
    std::vector<token_meta> meta;
    for (index_t t = 0; t < n; ++t, ++next) {
      k.push_back(0.01f * static_cast<float>(next)), k.push_back(10.f + static_cast<float>(next));
      meta.push_back(text.meta(next));
    }
    c.append(0, {k.data(), n, 2, 1}, {v.data(), n, 2, 1}, meta);
  };
  append(6);  // 6 + 6 > 8: floors 1 + 1, the 6 others: head 0's 5, then head 1's t1
  c.compress(0);
  CHECK(c.length(0, 0) == 6);
  CHECK(c.length(0, 1) == 2);
  append(2);  // 8 + 4: floors 1 + 1, the 6 others all head 0's
  c.compress(0);
  CHECK(c.length(0, 0) == 7);
  CHECK(c.length(0, 1) == 1);
  append(2);
  CHECK(c.length(0, 0) == 9);
}

TEST_CASE("head_adaptive + a causal window longer than a head: queries before its first slot add nothing") {
  // 2 heads, dim 1 (logit = key, every query is 1), budget 3 per head (6 in all), floor 1,
  // max_chunk 2. Key gaps of 20 make each softmax one-hot to within e^-20.
  using comp = varlen_compressor<budgets::head_adaptive, scorers::observation_window>;
  comp c({.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1, .max_chunk = 2, .max_window = 5},
         {.scorer = {.pool_radius = 0}, .budget = {.tokens = 3, .min_head_fraction = 0.5}});
  const structures::sequence text{.length = 100};
  auto append = [&](index_t first, std::vector<float> k) {  // k: (tok, head)
    const index_t n = static_cast<index_t>(k.size()) / 2;
    std::vector<float> v(k.size(), 1.f);
    std::vector<token_meta> meta;
    for (index_t t = 0; t < n; ++t) meta.push_back(text.meta(first + t));
    c.append(0, {k.data(), n, 2, 1}, {v.data(), n, 2, 1}, meta);
  };
  const std::vector<float> q(5 * 2, 1.f);
  // Tokens 0..3. Head 0 keys 0 20 40 60, head 1 keys 30 -40 -40 -40. One query that sees
  // everything: head 0's mass ≈ (e^-60, e^-40, e^-20, 1), head 1's ≈ (1, e^-70, e^-70, e^-70).
  // Floors: head 0 t3, head 1 t0; the other 4 by mass: head 0's t2, t1, t0, then head 1's t1.
  append(0, {0, 30, 20, -40, 40, -40, 60, -40});
  c.compress(0, {q.data(), 1, 2, 1}, false);
  CHECK(kept_sets(c, 0, 2) == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {0, 1}});
  // Tokens 4, 5: head 0 keys 80 100 (6 tokens), head 1 keys -40 60 (4 tokens: 0 1 4 5).
  append(4, {80, -40, 100, 60});
  // A causal window of 5 queries: query j sits at slot n - 5 + j. In head 0 (n = 6) query j
  // sees slots ≤ j + 1 and attends to slot j + 1: masses (0, 1/5 ×5). In head 1 (n = 4) query 0
  // sees nothing and adds nothing; queries 1..3 attend to t0 (key 30), query 4 to t5 (key 60):
  // averaged over the 4 queries that see a key, masses (3/4, 0, 0, 1/4), summing to 1.
  std::vector<std::byte> buffer(1 << 16);
  workspace_carver carver(buffer.data());
  const auto ws = host::window_mass_workspace::carve(carver, 5, 1, 8);
  host::window_mass(c.layer(0), 1, kv_tensor<const float>{q.data(), 5, 2, 1}, true, ws);
  CHECK(ws.mass[0] == doctest::Approx(0.75f));
  CHECK(ws.mass[1] == doctest::Approx(0.f));
  CHECK(ws.mass[2] == doctest::Approx(0.f));
  CHECK(ws.mass[3] == doctest::Approx(0.25f));
  // Floors: head 0 t1 (ties at 1/5 go to the lower index), head 1 t0. The other 4: head 1's
  // needle t5 (1/4), then head 0's t2, t3, t4 (1/5). Averaged over all 5 queries instead,
  // the needle would tie head 0's tokens at 1/5 and lose.
  c.compress(0, {q.data(), 5, 2, 1});
  CHECK(kept_sets(c, 0, 2) == std::vector<std::vector<std::int64_t>>{{1, 2, 3, 4}, {0, 5}});
}
