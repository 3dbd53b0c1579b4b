// Exact kept sets of every scorer on small hand-checked inputs.
//
// Every expected set below is written literally, with the hand computation next to it.
// Inputs are small integers, exact in float, Eigen::half and Eigen::bfloat16, so every
// case runs for the three storage types and both cache layouts and must give the same set.
// Ties (equal scores) keep the smaller logical index; protected tokens are always kept;
// kv-heads choose independently.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using namespace kvcap;
using kept_sets = std::vector<std::vector<std::int64_t>>;  // (head) -> kept logical indices

struct hand_case {
  index_t heads = 1, dim = 1, budget = 1;
  std::vector<float> k, v;                 // (tok, head, dim), token-major
  std::vector<index_t> protected_tokens;   // logical indices
  std::vector<index_t> chunks;             // chunk sizes, in order; sum = number of tokens
};

index_t tokens_of(const hand_case& hc) { return static_cast<index_t>(hc.k.size()) / (hc.heads * hc.dim); }

template <class T, class Layout, class Scorer>
kept_sets run_layout(const hand_case& hc, Scorer scorer) {
  const index_t n = tokens_of(hc), per_tok = hc.heads * hc.dim;
  REQUIRE(static_cast<index_t>(hc.v.size()) == n * per_tok);
  index_t max_chunk = 1, total = 0;
  for (index_t c : hc.chunks) max_chunk = std::max(max_chunk, c), total += c;
  REQUIRE(total == n);
  host::compressor<T, Layout, Scorer, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = hc.heads, .num_q_heads = hc.heads, .head_dim = hc.dim, .max_chunk = max_chunk},
      {.scorer = scorer, .budget = {.tokens = hc.budget}});
  std::vector<T> k(hc.k.size()), v(hc.v.size());
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = T(hc.k[i]), v[i] = T(hc.v[i]);
  std::vector<token_meta> meta(static_cast<std::size_t>(n));
  for (index_t tok = 0; tok < n; ++tok) {
    meta[tok] = structures::sequence{.length = n}.meta(tok);
    meta[tok].is_protected =
        std::find(hc.protected_tokens.begin(), hc.protected_tokens.end(), tok) != hc.protected_tokens.end();
  }
  index_t begin = 0;
  for (index_t size : hc.chunks) {
    c.append(0, {k.data() + begin * per_tok, size, hc.heads, hc.dim}, {v.data() + begin * per_tok, size, hc.heads, hc.dim},
             std::span<const token_meta>(meta).subspan(begin, size));
    c.compress(0);
    begin += size;
  }
  const auto& view = c.layer(0);
  CHECK(view.length == std::min(n, hc.budget));
  kept_sets kept(static_cast<std::size_t>(hc.heads));
  for (index_t head = 0; head < hc.heads; ++head)
    for (index_t slot = 0; slot < view.length; ++slot) {
      const token_meta& m = view.meta_at(slot, head);
      kept[head].push_back(m.index);
      // The slot holds exactly that token's key and value of this head.
      CHECK(std::memcmp(view.k + view.mapping(slot, head), k.data() + m.index * per_tok + head * hc.dim, hc.dim * sizeof(T)) == 0);
      CHECK(std::memcmp(view.v + view.mapping(slot, head), v.data() + m.index * per_tok + head * hc.dim,
                        hc.dim * sizeof(T)) == 0);
    }
  return kept;
}

/// Kept sets for both layouts, which must agree.
template <class T, class Scorer>
kept_sets run(const hand_case& hc, Scorer scorer = {}) {
  const kept_sets nhd = run_layout<T, layouts::nhd>(hc, scorer);
  const kept_sets hnd = run_layout<T, layouts::hnd>(hc, scorer);
  CHECK(nhd == hnd);
  return nhd;
}

hand_case with_budget(hand_case hc, index_t budget) {
  hc.budget = budget;
  return hc;
}

// ---- key_norm --------------------------------------------------------------------------
// One head, dim 2. Scores are -|k|:
//   tok 0 (3,4)  |k| 5    score -5
//   tok 1 (1,0)  |k| 1    score -1
//   tok 2 (0,2)  |k| 2    score -2
//   tok 3 (6,8)  |k| 10   score -10
//   tok 4 (0,0)  |k| 0    score  0
//   tok 5 (2,0)  |k| 2    score -2   (ties with tok 2: tok 2 wins, smaller index)
// Rank: 4, 1, 2, 5, 0, 3.
hand_case key_norm_case() {
  hand_case hc;
  hc.dim = 2;
  hc.k = {3, 4, 1, 0, 0, 2, 6, 8, 0, 0, 2, 0};
  hc.v = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6};
  hc.chunks = {6};
  return hc;
}

}  // namespace

TEST_CASE_TEMPLATE("key_norm keeps the lowest-norm keys, ties to the smaller index", T, float, Eigen::half,
                   Eigen::bfloat16) {
  const hand_case hc = key_norm_case();
  CHECK(run<T, scorers::key_norm>(with_budget(hc, 1)) == kept_sets{{4}});
  CHECK(run<T, scorers::key_norm>(with_budget(hc, 2)) == kept_sets{{1, 4}});
  CHECK(run<T, scorers::key_norm>(with_budget(hc, 3)) == kept_sets{{1, 2, 4}});     // tie 2 vs 5 -> 2
  CHECK(run<T, scorers::key_norm>(with_budget(hc, 4)) == kept_sets{{1, 2, 4, 5}});
  CHECK(run<T, scorers::key_norm>(with_budget(hc, 5)) == kept_sets{{0, 1, 2, 4, 5}});
}

TEST_CASE_TEMPLATE("key_norm: protected tokens are kept whatever their score", T, float, Eigen::half,
                   Eigen::bfloat16) {
  hand_case hc = with_budget(key_norm_case(), 3);
  // tok 3 has the worst score (-10) and tok 0 the second worst (-5); protecting both leaves
  // one free slot, which goes to the best unprotected token, tok 4 (score 0).
  hc.protected_tokens = {0, 3};
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{0, 3, 4}});
  // Protected tokens arriving in a later chunk still win: chunks {0,1,2} then {3,4,5}.
  // After chunk 1 (budget 3, 3 tokens): {0,1,2}. After chunk 2: protected 0, 3, then 4.
  hc.chunks = {3, 3};
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{0, 3, 4}});
  // Budget equal to the protected count keeps exactly the protected tokens.
  hc.budget = 2;
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{0, 3}});
}

TEST_CASE_TEMPLATE("key_norm across chunks: evicted tokens never come back", T, float, Eigen::half, Eigen::bfloat16) {
  // Chunks {0,1,2}, {3,4,5}, budget 2.
  // After chunk 1: scores 0:-5 1:-1 2:-2 -> keep {1, 2}.
  // After chunk 2: resident 1:-1 2:-2 3:-10 4:0 5:-2 -> keep {4, 1} = {1, 4}.
  hand_case hc = with_budget(key_norm_case(), 2);
  hc.chunks = {3, 3};
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{1, 4}});
  // Chunks {0}, {1,2,3,4}, {5}, budget 2: chunk sizes may differ; 0 -> {0};
  // {0,1,2,3,4} -> 4 (0), 1 (-1) -> {1,4}; {1,4,5} -> {1,4}.
  hc.chunks = {1, 4, 1};
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{1, 4}});
}

TEST_CASE_TEMPLATE("key_norm: each kv-head keeps its own set", T, float, Eigen::half, Eigen::bfloat16) {
  // Two heads, dim 2, budget 3. Head 0 is key_norm_case (keeps {1, 2, 4}).
  // Head 1: tok 0 (0,0) |k| 0; tok 1 (0,1) 1; tok 2 (9,0) 9; tok 3 (1,1) 1.41; tok 4 (4,3) 5;
  //         tok 5 (0,3) 3.  Lowest three: 0, 1, 3.
  const std::vector<float> h0 = {3, 4, 1, 0, 0, 2, 6, 8, 0, 0, 2, 0};
  const std::vector<float> h1 = {0, 0, 0, 1, 9, 0, 1, 1, 4, 3, 0, 3};
  hand_case hc;
  hc.heads = 2, hc.dim = 2, hc.budget = 3, hc.chunks = {4, 2};
  for (int tok = 0; tok < 6; ++tok)
    for (const auto* h : {&h0, &h1})
      for (int i = 0; i < 2; ++i) hc.k.push_back((*h)[tok * 2 + i]), hc.v.push_back(static_cast<float>(tok));
  // With chunks {4, 2}: after chunk 1 head 0 holds 0..3 -> keep 1 (-1), 2 (-2), 0 (-5);
  // then {0,1,2,4,5} -> 4, 1, 2. Head 1: 0..3 -> 0, 1, 3; then {0,1,3,4,5} -> 0, 1, 3.
  CHECK(run<T, scorers::key_norm>(hc) == kept_sets{{1, 2, 4}, {0, 1, 3}});
}

// ---- value_norm ------------------------------------------------------------------------
// One head, dim 3. Scores are |v|:
//   tok 0 (1,2,2) 3;  tok 1 (0,0,5) 5;  tok 2 (2,3,6) 7;  tok 3 (0,3,4) 5 (ties tok 1);
//   tok 4 (1,0,0) 1.  Rank: 2, 1, 3, 0, 4.
TEST_CASE_TEMPLATE("value_norm keeps the highest value norms, ties to the smaller index", T, float, Eigen::half,
                   Eigen::bfloat16) {
  hand_case hc;
  hc.dim = 3;
  hc.v = {1, 2, 2, 0, 0, 5, 2, 3, 6, 0, 3, 4, 1, 0, 0};
  hc.k = {1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0};  // keys do not matter
  hc.chunks = {5};
  CHECK(run<T, scorers::value_norm>(with_budget(hc, 1)) == kept_sets{{2}});
  CHECK(run<T, scorers::value_norm>(with_budget(hc, 2)) == kept_sets{{1, 2}});  // tie 1 vs 3 -> 1
  CHECK(run<T, scorers::value_norm>(with_budget(hc, 3)) == kept_sets{{1, 2, 3}});
  CHECK(run<T, scorers::value_norm>(with_budget(hc, 4)) == kept_sets{{0, 1, 2, 3}});
  // Protect the smallest value (tok 4) at budget 2: {4} plus the best, tok 2.
  hc.protected_tokens = {4};
  CHECK(run<T, scorers::value_norm>(with_budget(hc, 2)) == kept_sets{{2, 4}});
}

TEST_CASE_TEMPLATE("value_norm: each kv-head keeps its own set", T, float, Eigen::half, Eigen::bfloat16) {
  // Two heads, dim 2, budget 2, one chunk of 4.
  // Head 0 values: (3,4) 5, (0,1) 1, (6,8) 10, (0,0) 0   -> keep 2, 0 = {0, 2}
  // Head 1 values: (0,0) 0, (2,0) 2, (1,0) 1, (0,7) 7    -> keep 3, 1 = {1, 3}
  hand_case hc;
  hc.heads = 2, hc.dim = 2, hc.budget = 2, hc.chunks = {4};
  hc.v = {3, 4, 0, 0, /**/ 0, 1, 2, 0, /**/ 6, 8, 1, 0, /**/ 0, 0, 0, 7};
  hc.k = std::vector<float>(16, 1.f);
  CHECK(run<T, scorers::value_norm>(hc) == kept_sets{{0, 2}, {1, 3}});
}

// ---- recency + sinks ---------------------------------------------------------------------
TEST_CASE_TEMPLATE("recency keeps the sinks and the newest tokens", T, float, Eigen::half, Eigen::bfloat16) {
  // 10 tokens, dim 1, in chunks of 6 and 4, budget 4, 2 sinks. Scores: 0, 1 -> +inf; else index.
  // After chunk 1 (0..5): sinks 0, 1, then 5, 4 -> {0, 1, 4, 5}.
  // After chunk 2: {0,1,4,5,6,7,8,9} -> sinks 0, 1, then 9, 8 -> {0, 1, 8, 9}.
  hand_case hc;
  hc.budget = 4, hc.chunks = {6, 4};
  for (int i = 0; i < 10; ++i) hc.k.push_back(static_cast<float>(i % 3)), hc.v.push_back(1.f);
  CHECK(run<T>(hc, scorers::recency{.num_sinks = 2}) == kept_sets{{0, 1, 8, 9}});
  // No sinks: the four newest.
  CHECK(run<T>(hc, scorers::recency{.num_sinks = 0}) == kept_sets{{6, 7, 8, 9}});
  // More sinks than the budget: both sinks score +inf and tie; smaller index first ->
  // budget 4, 6 sinks: {0, 1, 2, 3}.
  CHECK(run<T>(hc, scorers::recency{.num_sinks = 6}) == kept_sets{{0, 1, 2, 3}});
  // A protected old token (5) takes one of the newest's places: after chunk 1 {0,1,4,5}
  // (5 protected anyway); after chunk 2: protected 5, sinks 0 and 1, then the newest, 9.
  hc.protected_tokens = {5};
  CHECK(run<T>(hc, scorers::recency{.num_sinks = 2}) == kept_sets{{0, 1, 5, 9}});
}

TEST_CASE_TEMPLATE("recency is the same for every head", T, float, Eigen::half, Eigen::bfloat16) {
  // Three heads with different keys; 7 tokens in chunks 3, 3, 1; budget 3; 1 sink.
  // After 0..2: {0, 1, 2}; after 0..5: 0 (sink), 5, 4; after {0,4,5,6}: 0, 6, 5.
  hand_case hc;
  hc.heads = 3, hc.dim = 2, hc.budget = 3, hc.chunks = {3, 3, 1};
  for (int i = 0; i < 7 * 3 * 2; ++i) hc.k.push_back(static_cast<float>((i * 7) % 5)), hc.v.push_back(1.f);
  CHECK(run<T>(hc, scorers::recency{.num_sinks = 1}) == kept_sets{{0, 5, 6}, {0, 5, 6}, {0, 5, 6}});
}

// ---- key_diff ------------------------------------------------------------------------------
// Head A, dim 2: keys (1,0) (1,0) (0,1) (2,0) (-1,0) (0,0).
//   Unit keys: (1,0) (1,0) (0,1) (1,0) (-1,0) and 0 for the zero key; their sum is (2, 1),
//   the anchor a = (2,1)/6 points along (2,1); |(2,1)| = sqrt 5.
//   cos(k, a): (1,0) -> 2/sqrt5 = .894; (0,1) -> 1/sqrt5 = .447; (2,0) -> .894; (-1,0) -> -.894;
//   zero key -> 0 (by definition).  Scores -cos:
//   tok 0 -.894, tok 1 -.894, tok 2 -.447, tok 3 -.894, tok 4 +.894, tok 5 0.
//   (toks 0, 1, 3 tie exactly: (2,0)·a / (2|a|) is the same float as (1,0)·a / |a|.)
//   Rank: 4, 5, 2, 0, 1, 3.
// Head B, dim 2: keys (0,1) (1,0) (1,0) (1,0) (0,1) (0,0).
//   Unit sum (3, 2); cos (1,0) = 3/sqrt13 = .832, (0,1) = 2/sqrt13 = .555, zero key 0.
//   Scores: tok 0 -.555, 1 -.832, 2 -.832, 3 -.832, 4 -.555, 5 0.  Rank: 5, 0, 4, 1, 2, 3.
namespace {
const std::vector<float> key_diff_a = {1, 0, 1, 0, 0, 1, 2, 0, -1, 0, 0, 0};
const std::vector<float> key_diff_b = {0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0};
}  // namespace

TEST_CASE_TEMPLATE("key_diff keeps the keys farthest from the mean key direction", T, float, Eigen::half,
                   Eigen::bfloat16) {
  hand_case hc;
  hc.dim = 2, hc.chunks = {6};
  hc.k = key_diff_a;
  hc.v = std::vector<float>(12, 1.f);
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 1)) == kept_sets{{4}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 2)) == kept_sets{{4, 5}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 3)) == kept_sets{{2, 4, 5}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 4)) == kept_sets{{0, 2, 4, 5}});  // 3-way tie -> 0
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 5)) == kept_sets{{0, 1, 2, 4, 5}});
  // Protected tok 3 (one of the tied worst): kept, plus the two best, 4 and 5.
  hc.protected_tokens = {3};
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 3)) == kept_sets{{3, 4, 5}});
}

TEST_CASE_TEMPLATE("key_diff: the anchor is recomputed over the resident tokens only", T, float, Eigen::half,
                   Eigen::bfloat16) {
  // Head A in chunks {0,1,2,3}, {4,5}, budget 2.
  // Chunk 1: units (1,0) (1,0) (0,1) (1,0), sum (3,1); cos (1,0) = 3/sqrt10 = .949,
  //   (0,1) = 1/sqrt10 = .316 -> keep 2 (-.316), then 0 (-.949, ties 1 and 3) -> {0, 2}.
  // Chunk 2: resident 0 (1,0), 2 (0,1), 4 (-1,0), 5 (0,0); unit sum (0, 1):
  //   cos: tok 0 -> 0, tok 2 -> 1, tok 4 -> 0, tok 5 -> 0 (zero key).
  //   Scores: 0, -1, 0, 0 -> keep 0 and 4 (ties 0/4/5 -> smaller indices) -> {0, 4}.
  // (An anchor over all six tokens would have given {4, 5}.)
  hand_case hc;
  hc.dim = 2, hc.budget = 2, hc.chunks = {4, 2};
  hc.k = key_diff_a;
  hc.v = std::vector<float>(12, 1.f);
  CHECK(run<T, scorers::key_diff>(hc) == kept_sets{{0, 4}});
}

TEST_CASE_TEMPLATE("key_diff: keys are normalised before averaging, a long key does not steer the anchor", T, float,
                   Eigen::half, Eigen::bfloat16) {
  // Keys (8,0) (0,1) (0,1) (1,1). Unit keys sum to (1 + .707, 2 + .707) = (1.707, 2.707),
  // |.| = 3.200:  cos(8,0) = 1.707 / 3.200 = .533;  cos(0,1) = 2.707 / 3.200 = .846;
  // cos(1,1) = (1.707 + 2.707) / (1.414 * 3.200) = .975.
  // Scores -cos: tok 0 -.533, tok 1 = tok 2 -.846 (same key), tok 3 -.975. Rank 0, 1, 2, 3.
  // (The mean of the raw keys, (9, 3), would rank 1, 2, 3, 0 instead.)
  hand_case hc;
  hc.dim = 2, hc.chunks = {4};
  hc.k = {8, 0, 0, 1, 0, 1, 1, 1};
  hc.v = std::vector<float>(8, 1.f);
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 1)) == kept_sets{{0}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 2)) == kept_sets{{0, 1}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 3)) == kept_sets{{0, 1, 2}});
}

TEST_CASE_TEMPLATE("key_diff: each kv-head keeps its own set", T, float, Eigen::half, Eigen::bfloat16) {
  // Budget 3: head A keeps {2, 4, 5}; head B keeps 5, 0, 4 = {0, 4, 5}.
  // Budget 2: head A {4, 5}; head B {0, 5}.
  hand_case hc;
  hc.heads = 2, hc.dim = 2, hc.chunks = {6};
  for (int tok = 0; tok < 6; ++tok)
    for (const auto* h : {&key_diff_a, &key_diff_b})
      for (int i = 0; i < 2; ++i) hc.k.push_back((*h)[tok * 2 + i]), hc.v.push_back(1.f);
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 3)) == kept_sets{{2, 4, 5}, {0, 4, 5}});
  CHECK(run<T, scorers::key_diff>(with_budget(hc, 2)) == kept_sets{{4, 5}, {0, 5}});
}

TEST_CASE("identical keys tie: the smaller logical index always wins, for every scorer") {
  // Eight identical tokens (dim 3, key (1,2,2), value (2,1,2)), budget 3: every score-based
  // scorer sees eight equal scores and keeps 0, 1, 2.
  hand_case hc;
  hc.dim = 3, hc.budget = 3, hc.chunks = {5, 3};
  for (int tok = 0; tok < 8; ++tok) hc.k.insert(hc.k.end(), {1, 2, 2}), hc.v.insert(hc.v.end(), {2, 1, 2});
  CHECK(run<float, scorers::key_norm>(hc) == kept_sets{{0, 1, 2}});
  CHECK(run<float, scorers::value_norm>(hc) == kept_sets{{0, 1, 2}});
  CHECK(run<float, scorers::key_diff>(hc) == kept_sets{{0, 1, 2}});
  // With a protected token among them it is kept, and the rest go by index.
  hc.protected_tokens = {6};
  CHECK(run<float, scorers::key_norm>(hc) == kept_sets{{0, 1, 6}});
  CHECK(run<float, scorers::key_diff>(hc) == kept_sets{{0, 1, 6}});
}

TEST_CASE("ranks_before: protected first, then score, then the smaller index") {
  CHECK(ranks_before({-5.f, 9, true}, {3.f, 1, false}));
  CHECK_FALSE(ranks_before({3.f, 1, false}, {-5.f, 9, true}));
  CHECK(ranks_before({2.f, 9, false}, {1.f, 1, false}));
  CHECK(ranks_before({1.f, 1, false}, {1.f, 2, false}));
  CHECK_FALSE(ranks_before({1.f, 2, false}, {1.f, 1, false}));
  CHECK_FALSE(ranks_before({1.f, 1, false}, {1.f, 1, false}));  // irreflexive
  // NaN scores rank as -inf: below every finite score, tie with -inf by index.
  const float nan = sanitize_score(std::numeric_limits<float>::quiet_NaN());
  CHECK(nan == -std::numeric_limits<float>::infinity());
  CHECK(ranks_before({-1e30f, 5, false}, {nan, 1, false}));
}

TEST_CASE_TEMPLATE("dots: the three sums of squared_norm, squared_norm and dot, bit for bit", T, float, Eigen::half,
                   Eigen::bfloat16) {
  // Random lengths (odd ones included) and magnitudes, where a different add order would
  // show in the last bits; a half/bfloat16 key against a float anchor, as key_diff reads them.
  std::uint32_t state = 12345;
  const auto next = [&] { return (state = state * 1664525u + 1013904223u) >> 8; };
  for (int round = 0; round < 200; ++round) {
    const index_t n = 1 + static_cast<index_t>(next() % 300);
    std::vector<T> a(static_cast<std::size_t>(n));
    std::vector<float> b(a.size());
    for (index_t i = 0; i < n; ++i) {
      a[i] = static_cast<T>((static_cast<float>(next() % 20001) - 10000.f) / 997.f);
      b[i] = (static_cast<float>(next() % 20001) - 10000.f) / 31.f;
    }
    const vector_ref<const T> x{a.data(), n};
    const vector_ref<const float> y{b.data(), n};
    const dot_products s = dots(x, y);
    CHECK(s.aa == squared_norm(x));
    CHECK(s.bb == squared_norm(y));
    CHECK(s.ab == dot(x, y));
    const float denom = norm(x) * norm(y);
    CHECK(cosine(x, y) == (denom > 0.f ? dot(x, y) / denom : 0.f));
  }
  const std::vector<float> zero(5, 0.f), one(5, 1.f);
  CHECK(cosine(vector_ref<const float>{zero.data(), 5}, vector_ref<const float>{one.data(), 5}) == 0.f);
}

TEST_CASE_TEMPLATE("the device's batched 16-byte runs add exactly what the element loop adds", T, float, Eigen::half,
                   Eigen::bfloat16) {
  // The device path of dot / squared_norm / dots (detail::add_runs, then the element loop
  // for the tail), run here on the host against the host's element loop: every length from 0
  // to 200 crosses the batch (4 runs) and run (16 bytes) boundaries.
  struct alignas(16) aligned {
    T x[256];
    float y[256];
  };
  static aligned buf;
  std::uint32_t state = 777;
  const auto next = [&] { return (state = state * 1664525u + 1013904223u) >> 8; };
  for (index_t n = 0; n <= 200; ++n) {
    CAPTURE(n);
    for (index_t i = 0; i < n; ++i) {
      buf.x[i] = static_cast<T>((static_cast<float>(next() % 20001) - 10000.f) / 613.f);
      buf.y[i] = (static_cast<float>(next() % 20001) - 10000.f) / 17.f;
    }
    const vector_ref<const T> x{buf.x, n};
    const vector_ref<const float> y{buf.y, n};
    constexpr detail::sums all{.aa = true, .bb = true, .ab = true};
    dot_products runs;
    const index_t done = detail::add_runs<all>(x, y, runs);
    CHECK(done <= n);
    CHECK(n - done < 8);  // only a tail shorter than one 16-byte run of T (8 or 4 elements) is left
    detail::add_elements<all>(x, y, done, n, runs);
    const dot_products loop = dots(x, y);  // on the host: the element loop
    CHECK(runs.aa == loop.aa);
    CHECK(runs.bb == loop.bb);
    CHECK(runs.ab == loop.ab);
    dot_products one_sum;  // a single wanted sum, as squared_norm reads it
    constexpr detail::sums only_aa{.aa = true, .bb = false, .ab = false};
    detail::add_elements<only_aa>(x, x, detail::add_runs<only_aa>(x, x, one_sum), n, one_sum);
    CHECK(one_sum.aa == squared_norm(x));
  }
}
