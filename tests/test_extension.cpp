// A scorer and a cache layout written outside kvcap (tests/extension), each one header with no
// edit in include/kvcap, run by the host compressor: user::key_peak keeps hand-checked sets,
// and user::kv_fused (K and V of a token side by side in one engine buffer) keeps what a
// plain reference keeps, moves every row whole, writes nothing past its buffer, gets the same
// argument checks as kvcap's own layouts, and is left byte-identical by a refused chunk. The
// device kernels run both in tests/device/test_device_parity.cu.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "extension/key_peak.hpp"
#include "extension/kv_fused.hpp"
#include "test_seed.hpp"

namespace {

using namespace kvcap;
using kept_sets = std::vector<std::vector<std::int64_t>>;  // (head) -> kept logical indices

template <class T, class Layout, class Scorer>
using extension_compressor = host::compressor<T, Layout, Scorer, budgets::fixed_tokens>;

/// Kept logical indices of every head of `view`, slot by slot.
template <class T, class Layout>
kept_sets kept_of(const layer_view<T, Layout>& view) {
  kept_sets kept(static_cast<std::size_t>(view.mapping.num_heads));
  for (index_t head = 0; head < view.mapping.num_heads; ++head)
    for (index_t slot = 0; slot < view.length; ++slot) kept[head].push_back(view.meta_at(slot, head).index);
  return kept;
}

/// One layer's engine-owned storage in the fused layout: one buffer holding K and V, plus a
/// guard past its end that nothing may write.
template <class T>
struct fused_layer {
  static constexpr index_t guard = 64;
  std::vector<T> buffer;
  std::vector<token_meta> meta;
  layer_view<T, user::kv_fused> view{};

  fused_layer(index_t capacity, index_t heads, index_t dim) {
    view.mapping = make_mapping<user::kv_fused>(capacity, heads, dim);
    buffer.assign(static_cast<std::size_t>(view.mapping.required_span_size() + guard), static_cast<T>(-5.f));
    meta.assign(static_cast<std::size_t>(capacity * heads), token_meta{});
    view.k = buffer.data();
    view.v = user::kv_fused::values_of(buffer.data(), view.mapping);
    view.meta = meta.data();
  }
  bool guard_intact() const {
    return std::all_of(buffer.end() - guard, buffer.end(), [](T x) { return static_cast<float>(x) == -5.f; });
  }
};

// ---- user::key_peak: exact kept sets, by hand --------------------------------------------------

// Two heads, dim 2, six tokens in chunks of 3, budget 4. Keys (tok: head 0 | head 1) and their
// peaks max |k_d|:
//   0: ( 1,-3) 3 | ( 0, 1) 1        3: ( 1, 0) 1 | ( 5, 0) 5
//   1: ( 2, 2) 2 | ( 1, 1) 1        4: ( 0,-4) 4 | ( 0, 2) 2
//   2: (-3, 0) 3 | (-1,-1) 1        5: (-2, 2) 2 | ( 0,-1) 1
// Head 0: 4 (tok 4), 3 (toks 0, 2), then 2 ties between toks 1 and 5: the smaller index, 1,
// is kept. Kept {0, 1, 2, 4}. Head 1: 5 (tok 3), 2 (tok 4), then four tokens tie at 1 for two
// places: 0 and 1. Kept {0, 1, 3, 4}. (The first compress, after 3 tokens, evicts nothing.)
// Other reductions of |k_d| keep other sets: the sum would keep {0, 1, 4, 5} and {1, 2, 3, 4};
// key_norm, the lowest Euclidean norms, keeps {1, 2, 3, 5} and {0, 1, 2, 5} (checked below).
const std::vector<float> hand_keys = {1, -3, 0, 1,  2, 2, 1, 1,  -3, 0, -1, -1,
                                      1, 0,  5, 0,  0, -4, 0, 2, -2, 2, 0, -1};
const kept_sets hand_kept = {{0, 1, 2, 4}, {0, 1, 3, 4}};

/// Values unique per (tok, head, dim), small integers exact in every storage type.
std::vector<float> hand_values() {
  std::vector<float> v(hand_keys.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 12.f;
  return v;
}

/// Appends the hand case in chunks of 3, compressing after each; checks that every kept slot
/// holds its token's key and value; returns the kept sets.
template <class T, class Layout, class Scorer>
kept_sets run_hand_case(extension_compressor<T, Layout, Scorer>& c) {
  constexpr index_t heads = 2, dim = 2, per_tok = heads * dim;
  const std::vector<float> values = hand_values();
  std::vector<T> k(hand_keys.size()), v(values.size());
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<T>(hand_keys[i]), v[i] = static_cast<T>(values[i]);
  std::vector<token_meta> meta(6);
  for (index_t tok = 0; tok < 6; ++tok) meta[tok] = structures::sequence{.length = 6}.meta(tok);
  for (index_t begin = 0; begin < 6; begin += 3) {
    c.append(0, {k.data() + begin * per_tok, 3, heads, dim}, {v.data() + begin * per_tok, 3, heads, dim},
             std::span<const token_meta>(meta).subspan(begin, 3));
    c.compress(0);
  }
  const auto& view = c.layer(0);
  for (index_t head = 0; head < heads; ++head)
    for (index_t slot = 0; slot < view.length; ++slot) {
      const std::int64_t tok = view.meta_at(slot, head).index;
      for (index_t d = 0; d < dim; ++d) {
        CHECK(static_cast<float>(view.key(slot, head).data[d]) == hand_keys[tok * per_tok + head * dim + d]);
        CHECK(static_cast<float>(view.value(slot, head).data[d]) == values[tok * per_tok + head * dim + d]);
      }
    }
  return kept_of(view);
}

constexpr host::compressor_shape hand_shape{
    .num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 2, .max_chunk = 3};

TEST_CASE_TEMPLATE("key_peak, a scorer written outside kvcap, keeps the hand-checked sets", T, float, Eigen::half,
                   Eigen::bfloat16) {
  SUBCASE("NHD") {
    extension_compressor<T, layouts::nhd, user::key_peak> c(hand_shape, {.budget = {.tokens = 4}});
    CHECK(run_hand_case(c) == hand_kept);
  }
  SUBCASE("HND") {
    extension_compressor<T, layouts::hnd, user::key_peak> c(hand_shape, {.budget = {.tokens = 4}});
    CHECK(run_hand_case(c) == hand_kept);
  }
  SUBCASE("kv_fused, a layout written outside kvcap, over an engine's buffer") {
    fused_layer<T> layer(4 + hand_shape.max_chunk, 2, 2);
    extension_compressor<T, user::kv_fused, user::key_peak> c(hand_shape, {.budget = {.tokens = 4}},
                                                                std::span(&layer.view, 1));
    CHECK(run_hand_case(c) == hand_kept);
    CHECK(layer.guard_intact());
  }
  SUBCASE("key_norm, for contrast") {
    extension_compressor<T, layouts::nhd, scorers::key_norm> c(hand_shape, {.budget = {.tokens = 4}});
    CHECK(run_hand_case(c) == kept_sets{{1, 2, 3, 5}, {0, 1, 2, 5}});
  }
}

// ---- user::kv_fused: against a plain reference, randomized -------------------------------------

/// One resident token of one head in the reference: its index and its K and V row as stored.
template <class T>
struct reference_token {
  std::int64_t index = 0;
  std::vector<T> k, v;
};

/// key_peak's score, written again from its definition: the largest |k_d|.
template <class T>
float peak_of(const std::vector<T>& k) {
  float peak = 0.f;
  for (T x : k) peak = std::max(peak, std::abs(static_cast<float>(x)));
  return peak;
}

/// The reference's compress: the `budget` highest peaks, equal peaks to the smaller index,
/// the survivors in index order.
template <class T>
void reference_compress(std::vector<reference_token<T>>& head, index_t budget) {
  if (static_cast<index_t>(head.size()) <= budget) return;
  std::vector<reference_token<T>> ranked = head;
  std::sort(ranked.begin(), ranked.end(), [](const reference_token<T>& a, const reference_token<T>& b) {
    const float pa = peak_of(a.k), pb = peak_of(b.k);
    return pa != pb ? pa > pb : a.index < b.index;
  });
  ranked.resize(static_cast<std::size_t>(budget));
  std::sort(ranked.begin(), ranked.end(),
            [](const reference_token<T>& a, const reference_token<T>& b) { return a.index < b.index; });
  head = std::move(ranked);
}

template <class T>
void fused_matches_reference(std::mt19937_64& g) {
  const auto between = [&](index_t lo, index_t hi) { return std::uniform_int_distribution<index_t>(lo, hi)(g); };
  const index_t layers = between(1, 3), heads = between(1, 4), budget = between(1, 40), max_chunk = between(1, 30);
  const index_t dims[] = {1, 2, 3, 8, 16, 64};
  const index_t dim = dims[between(0, 5)];
  const bool small_ints = between(0, 1) == 1;  // many equal peaks
  const host::compressor_shape shape{.num_layers = layers, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim,
                               .max_chunk = max_chunk};
  std::vector<std::unique_ptr<fused_layer<T>>> storage;
  std::vector<layer_view<T, user::kv_fused>> views;
  for (index_t l = 0; l < layers; ++l) {
    storage.push_back(std::make_unique<fused_layer<T>>(budget + max_chunk, heads, dim));
    views.push_back(storage.back()->view);
  }
  extension_compressor<T, user::kv_fused, user::key_peak> c(shape, {.budget = {.tokens = budget}}, views);
  std::vector<std::vector<std::vector<reference_token<T>>>> reference(
      static_cast<std::size_t>(layers), std::vector<std::vector<reference_token<T>>>(static_cast<std::size_t>(heads)));
  const index_t chunks = between(1, 12);
  index_t next = 0;
  for (index_t chunk = 0; chunk < chunks; ++chunk) {
    const index_t n = between(1, max_chunk);
    std::vector<token_meta> meta(static_cast<std::size_t>(n));
    for (index_t t = 0; t < n; ++t) meta[t] = structures::sequence{.length = 1 << 20}.meta(next + t);
    for (index_t l = 0; l < layers; ++l) {
      std::vector<T> k(static_cast<std::size_t>(n * heads * dim)), v(k.size());
      for (auto* x : {&k, &v})
        for (T& e : *x)
          e = static_cast<T>(small_ints ? static_cast<float>(between(-3, 3))
                                        : std::normal_distribution<float>(0.f, 1.f)(g));
      c.append(l, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
      c.compress(l);
      for (index_t head = 0; head < heads; ++head) {
        auto& resident = reference[l][head];
        for (index_t t = 0; t < n; ++t) {
          const auto row = static_cast<std::ptrdiff_t>((t * heads + head) * dim);
          resident.push_back({next + t, std::vector<T>(k.begin() + row, k.begin() + row + dim),
                              std::vector<T>(v.begin() + row, v.begin() + row + dim)});
        }
        reference_compress(resident, budget);
      }
      const auto& view = c.layer(l);
      INFO("layer ", l, " of ", layers, ", chunk ", chunk, ", heads ", heads, ", dim ", dim, ", budget ", budget);
      REQUIRE(view.length == static_cast<index_t>(reference[l][0].size()));
      for (index_t head = 0; head < heads; ++head)
        for (index_t slot = 0; slot < view.length; ++slot) {
          const reference_token<T>& want = reference[l][head][slot];
          REQUIRE(view.meta_at(slot, head).index == want.index);
          REQUIRE(std::memcmp(view.key(slot, head).data, want.k.data(), dim * sizeof(T)) == 0);
          REQUIRE(std::memcmp(view.value(slot, head).data, want.v.data(), dim * sizeof(T)) == 0);
        }
      REQUIRE(storage[l]->guard_intact());
    }
    next += n;
  }
}

TEST_CASE_TEMPLATE("kv_fused, a layout written outside kvcap, keeps what a plain reference keeps", T, float,
                   Eigen::half) {
  // Random shapes, budgets, chunk histories and layers; K and V rows of each token in one
  // buffer. Small-integer values tie many peaks.
  std::mt19937_64 g(kvcap_test::shifted(71));
  for (int c = 0; c < 150; ++c) fused_matches_reference<T>(g);
}

TEST_CASE("kv_fused gets the checks of kvcap's own layouts, and a refused chunk leaves its buffer as it was") {
  constexpr host::compressor_shape shape{
      .num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 4, .max_chunk = 3};
  using fused = extension_compressor<float, user::kv_fused, user::key_peak>;
  SUBCASE("an engine layer with the wrong number of heads is named") {
    fused_layer<float> layer(8, 3, 4);
    CHECK_THROWS_WITH_AS(fused(shape, {.budget = {.tokens = 5}}, std::span(&layer.view, 1)),
                         "kvcap: argument 'engine_layers[layer].mapping.num_heads': expected 2, got 3", kvcap::error);
  }
  SUBCASE("NaN in v") {
    fused_layer<float> layer(8, 2, 4);
    fused c(shape, {.budget = {.tokens = 5}}, std::span(&layer.view, 1));
    std::vector<float> k(3 * 2 * 4, 1.f), v(k.size(), 2.f);
    std::vector<token_meta> meta(3);
    for (index_t t = 0; t < 3; ++t) meta[t] = structures::sequence{.length = 6}.meta(t);
    c.append(0, {k.data(), 3, 2, 4}, {v.data(), 3, 2, 4}, meta);
    c.compress(0);
    const std::vector<float> buffer = layer.buffer;
    const std::vector<token_meta> metadata = layer.meta;
    v[13] = std::nanf("");
    for (index_t t = 0; t < 3; ++t) meta[t] = structures::sequence{.length = 6}.meta(3 + t);
    CHECK_THROWS_WITH_AS(c.append(0, {k.data(), 3, 2, 4}, {v.data(), 3, 2, 4}, meta),
                         "kvcap: argument 'v': expected finite values, got nan at element 13", kvcap::error);
    CHECK(c.length(0) == 3);
    CHECK(std::memcmp(layer.buffer.data(), buffer.data(), buffer.size() * sizeof(float)) == 0);
    CHECK(std::equal(layer.meta.begin(), layer.meta.end(), metadata.begin()));
  }
}

}  // namespace
