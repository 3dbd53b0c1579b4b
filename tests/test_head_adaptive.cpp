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
}  // namespace

TEST_CASE("head_adaptive shares the layer total by score, with a floor per head") {
  // 2 heads, dim 1, key_norm (keep low |k|). 6 tokens. Head 0 keys: 1 2 3 4 5 6;
  // head 1 keys: 10 20 30 40 50 60. Budget 3 per head = 6 in all, floor 1 (fraction 1/3).
  // Floors: head 0 keeps t0 (|k| 1), head 1 keeps t0 (10). Remaining 4 go to the best of
  // the rest across heads: head 0's 2 3 4 5 (scores −2..−5) beat head 1's 20.. (−20..).
  // Head 0 keeps {0,1,2,3,4}, head 1 keeps {0}.
  const std::vector<float> k = {1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60};  // (tok, head, dim=1)
  const std::vector<float> v(12, 1.f);
  const structures::sequence text{.length = 6};
  std::vector<token_meta> meta;
  for (index_t t = 0; t < 6; ++t) meta.push_back(text.meta(t));
  varlen_compressor<budgets::head_adaptive> c(
      {.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1, .max_chunk = 6},
      {.budget = {.tokens = 3, .min_head_fraction = 1.0 / 3.0}});
  c.append(0, {k.data(), 6, 2, 1}, {v.data(), 6, 2, 1}, meta);
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
  const std::vector<float> k2 = {0.5f, 0.5f, 7, 70, 8, 80, 9, 90, 11, 0.25f, 12, 100};
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
  std::mt19937 rng(5);
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
  CHECK(varlen_mr.peak_bytes() == a.memory().storage_bytes + adaptive::workspace_bytes(shape, 70));
}
