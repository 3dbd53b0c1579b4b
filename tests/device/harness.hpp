#pragma once
// tests/device/harness.hpp — randomized cases shared by the CPU tests of the device algorithm
// (host reference) and the GPU tests: host executors driven through random chunks, images of
// their caches in other arrangements of the same layout (shuffled page pools, padded per-head
// runs), an independent oracle for per-head lengths and budgets, and byte comparisons.
// Plain C++ (no CUDA): the GPU tests copy these host images to the device.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <kvcap/budgets/fixed_tokens.hpp>
#include <kvcap/budgets/head_adaptive.hpp>
#include <kvcap/host/compressor.hpp>
#include <kvcap/layouts/hnd.hpp>
#include <kvcap/layouts/nhd.hpp>
#include <kvcap/layouts/paged.hpp>
#include <kvcap/layouts/varlen.hpp>
#include <kvcap/scorers.hpp>
#include <kvcap/structures/sequence.hpp>
#include <kvcap/structures/temporal_frames.hpp>
#include <kvcap/reducers/evict.hpp>
#include <kvcap/reducers/merge.hpp>
#include <cmath>

#include "../test_seed.hpp"

namespace kvcap_test {
using namespace kvcap;

struct rng {
  std::mt19937_64 g;
  explicit rng(std::uint64_t seed) : g(shifted(seed)) {}  // KVCAP_TEST_SEED moves it (test_seed.hpp)
  index_t between(index_t lo, index_t hi) { return std::uniform_int_distribution<index_t>(lo, hi)(g); }  // [lo, hi]
  bool chance(double p) { return std::bernoulli_distribution(p)(g); }
  float normal() { return std::normal_distribution<float>(0.f, 1.f)(g); }
};

template <class Layout>
constexpr const char* layout_name() {
  if constexpr (std::is_same_v<Layout, layouts::nhd>) return "nhd";
  else if constexpr (std::is_same_v<Layout, layouts::hnd>) return "hnd";
  else if constexpr (std::is_same_v<Layout, layouts::paged_nhd>) return "paged_nhd";
  else if constexpr (std::is_same_v<Layout, layouts::paged_hnd>) return "paged_hnd";
  else if constexpr (std::is_same_v<Layout, layouts::varlen>) return "varlen";
  else return "a layout outside kvcap";
}

/// Layouts whose K and V share one buffer (tests/extension/kv_fused.hpp): the view's v lies in
/// the buffer its k starts, where `Layout::values_of` puts it.
template <class Layout>
constexpr bool fused_kv = requires(float* buffer, const typename Layout::mapping& m) {
  { Layout::values_of(buffer, m) } -> std::same_as<float*>;
};

/// T holds float's exponent range (float, bfloat16), not half's (its largest finite is 65504).
template <class T>
bool reaches_float_range() {
  return std::isfinite(static_cast<float>(static_cast<T>(1e30f)));
}

/// How a case's values are drawn.
enum class values { normal, small_ints, duplicates, huge };

template <class T>
T draw(rng& r, values mode, const T* previous_row, index_t dim) {
  switch (mode) {
    case values::normal: return static_cast<T>(r.normal());
    case values::small_ints: {
      const auto x = static_cast<float>(r.between(-2, 2));
      return static_cast<T>(x == 0.f && r.chance(0.5) ? -0.f : x);
    }
    case values::duplicates:
      if (previous_row != nullptr && r.chance(0.5)) return previous_row[dim];
      return static_cast<T>(static_cast<float>(r.between(-1, 1)));
    case values::huge: {  // the top of T's range: float's (float, bfloat16) or half's
      const float x = r.normal();
      if (reaches_float_range<T>()) return static_cast<T>(r.chance(0.2) ? x * 1e30f : x);
      return static_cast<T>(r.chance(0.2) ? std::clamp(x * 2e4f, -6e4f, 6e4f) : x);
    }
  }
  return T{};
}

/// A cache in host memory: storage plus the view over it (pointers into the vectors).
template <class T, layout Layout>
struct host_image {
  std::vector<T> k, v;
  std::vector<token_meta> meta;
  std::vector<std::int32_t> block_table;
  std::vector<index_t> head_indptr;
  layer_view<T, Layout> view{};

  host_image() = default;
  host_image(const host_image&) = delete;
  host_image& operator=(const host_image&) = delete;

  void bind() {
    view.k = k.data(), view.meta = meta.data();
    if constexpr (fused_kv<Layout>) view.v = Layout::values_of(k.data(), view.mapping);  // v stays empty
    else view.v = v.data();
    if constexpr (requires { view.mapping.block_table; })
      view.mapping.block_table = block_table.empty() ? nullptr : block_table.data();
    if constexpr (requires { view.mapping.head_indptr; })
      view.mapping.head_indptr = head_indptr.empty() ? nullptr : head_indptr.data();
  }
};

/// A random arrangement of Layout holding at least `capacity` tokens per head, each head
/// room for at least `min_room`: shuffled page pools of random page size, padded per-head runs.
template <class T, layout Layout>
void arrange(host_image<T, Layout>& img, rng& r, index_t capacity, index_t heads, index_t dim) {
  auto& m = img.view.mapping;
  m = make_mapping<Layout>(capacity, heads, dim);
  if constexpr (requires { m.block_table; }) {
    const index_t sizes[] = {1, 2, 3, 4, 8, 16};
    m.page_size = sizes[r.between(0, 5)];
    const index_t logical = m.logical_pages();
    m.num_pages = logical + r.between(0, 3);
    std::vector<std::int32_t> pool(static_cast<std::size_t>(m.num_pages));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), r.g);
    img.block_table.assign(pool.begin(), pool.begin() + logical);
  } else if constexpr (requires { m.head_indptr; }) {
    m.capacity = capacity + r.between(0, 3);  // the largest head's room
    img.head_indptr.assign(static_cast<std::size_t>(heads + 1), 0);
    const index_t widest = r.between(0, heads - 1);
    index_t at = r.between(0, 2);
    for (index_t h = 0; h < heads; ++h) {
      img.head_indptr[h] = at;
      at += h == widest ? m.capacity : r.between(capacity, m.capacity);
      if (h + 1 < heads) at += r.between(0, 3);  // gaps between heads
    }
    img.head_indptr[heads] = at;
    m.num_slots = at;
    if constexpr (requires { m.packed_meta; }) m.packed_meta = r.chance(0.5);  // metadata packed like K and V
  }
  const auto elems = static_cast<std::size_t>(m.required_span_size());
  // Fill with a recognisable pattern so stray writes show.
  img.k.assign(elems, static_cast<T>(7.f));
  img.v.assign(fused_kv<Layout> ? 0 : elems, static_cast<T>(-7.f));  // a fused layout's V is in k
  token_meta junk{};
  junk.index = -99;
  index_t metas = m.capacity * heads;
  if constexpr (requires { m.packed_meta; })
    if (m.packed_meta) metas = m.num_slots;
  img.meta.assign(static_cast<std::size_t>(metas), junk);
  img.bind();
  // head_indptr rooms may differ from the first head_indptr's; the varlen rooms above exceed
  // `capacity`, so every head can hold the tokens copied into it.
}

/// Copies slots [0, lengths[head]) of every head from one view to another (any layouts).
template <class T, layout A, layout B>
void copy_tokens(const layer_view<T, A>& from, const layer_view<T, B>& to, std::span<const index_t> lengths) {
  const index_t heads = from.mapping.num_heads, dim = from.mapping.head_dim;
  for (index_t head = 0; head < heads; ++head)
    for (index_t tok = 0; tok < lengths[head]; ++tok) {
      std::memcpy(to.k + to.mapping(tok, head), from.k + from.mapping(tok, head), dim * sizeof(T));
      std::memcpy(to.v + to.mapping(tok, head), from.v + from.mapping(tok, head), dim * sizeof(T));
      to.meta_at(tok, head) = from.meta_at(tok, head);
    }
}

/// First difference between slots [0, lengths[head]) of two views, or "" when equal.
template <class T, layout A, layout B>
std::string compare_tokens(const layer_view<T, A>& x, const layer_view<T, B>& y, std::span<const index_t> lengths) {
  const index_t heads = x.mapping.num_heads, dim = x.mapping.head_dim;
  for (index_t head = 0; head < heads; ++head)
    for (index_t tok = 0; tok < lengths[head]; ++tok) {
      const auto where = " at head " + std::to_string(head) + " slot " + std::to_string(tok);
      if (!(x.meta_at(tok, head) == y.meta_at(tok, head)))
        return "meta differs" + where + " (index " + std::to_string(x.meta_at(tok, head).index) + " vs " +
               std::to_string(y.meta_at(tok, head).index) + ")";
      if (std::memcmp(x.k + x.mapping(tok, head), y.k + y.mapping(tok, head), dim * sizeof(T)) != 0)
        return "k differs" + where;
      if (std::memcmp(x.v + x.mapping(tok, head), y.v + y.mapping(tok, head), dim * sizeof(T)) != 0)
        return "v differs" + where;
    }
  return {};
}

/// A host image with the same arrangement (and contents) as `from`.
template <class T, layout Layout>
void clone(const host_image<T, Layout>& from, host_image<T, Layout>& to) {
  to.k = from.k, to.v = from.v, to.meta = from.meta, to.block_table = from.block_table, to.head_indptr = from.head_indptr;
  to.view = from.view;
  to.bind();
}

/// First difference between two images' whole storage (every element, in use or not).
template <class T, layout Layout>
std::string compare_storage(const host_image<T, Layout>& x, const host_image<T, Layout>& y) {
  const auto first_difference = [](const std::vector<T>& a, const std::vector<T>& b) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return std::to_string(i);
    return std::string{};
  };
  if (const auto at = first_difference(x.k, y.k); !at.empty()) return "k storage differs at element " + at;
  if (const auto at = first_difference(x.v, y.v); !at.empty()) return "v storage differs at element " + at;
  for (std::size_t i = 0; i < x.meta.size(); ++i)
    if (!(x.meta[i] == y.meta[i])) return "meta storage differs at " + std::to_string(i);
  return {};
}

/// What an in-place compaction leaves past a head's new length: slot p of [lengths[head],
/// lengths_before[head]) still holds the row it held when the compaction began. That is the
/// row `before` held there, unless that row was kept: it then moved to the front, and a merge
/// may have folded dropped tokens into it first, so p holds the kept token's final row (K, V
/// and metadata, read from `after` by logical index). Writes those rows into `expected`, so
/// that a whole-storage comparison also checks what a compression may leave behind.
template <class T, layout A, layout B>
void add_left_behind_rows(const layer_view<T, A>& before, std::span<const index_t> lengths_before,
                          const layer_view<T, B>& after, std::span<const index_t> lengths,
                          const layer_view<T, A>& expected) {
  const index_t heads = before.mapping.num_heads, dim = before.mapping.head_dim;
  for (index_t head = 0; head < heads; ++head)
    for (index_t p = lengths[head]; p < lengths_before[head]; ++p) {
      const index_t logical = before.meta_at(p, head).index;
      for (index_t j = 0; j < lengths[head]; ++j)
        if (after.meta_at(j, head).index == logical) {
          std::memcpy(expected.k + expected.mapping(p, head), after.k + after.mapping(j, head), dim * sizeof(T));
          std::memcpy(expected.v + expected.mapping(p, head), after.v + after.mapping(j, head), dim * sizeof(T));
          expected.meta_at(p, head) = after.meta_at(j, head);
          break;
        }
    }
}

/// A random scorer of each kind.
template <class S>
S make_scorer(rng& r) {
  if constexpr (std::is_same_v<S, scorers::recency>) return {.num_sinks = r.between(0, 6)};
  else if constexpr (std::is_same_v<S, scorers::observation_window>) return {.pool_radius = r.between(0, 3)};
  else if constexpr (std::is_same_v<S, scorers::temporal_redundancy>) return {.max_lookback = r.between(1, 3)};
  else if constexpr (std::is_same_v<S, scorers::pooled_value_norm>) return {.radius = r.between(0, 2)};
  else if constexpr (requires { S{}.num_recent; }) {
    S s{};
    s.base = make_scorer<decltype(s.base)>(r);
    s.num_sinks = r.between(0, 4), s.num_recent = r.between(0, 8);
    return s;
  } else if constexpr (requires { S{}.weight_a; }) {
    S s{};
    s.weight_a = static_cast<float>(r.between(0, 4)) / 4.f, s.weight_b = static_cast<float>(r.between(-4, 4)) / 4.f;
    return s;
  } else
    return S{};
}

/// A structure model for the scorer: video frames when it asks for neighbours.
template <class S>
constexpr bool uses_structure = std::is_same_v<S, scorers::temporal_redundancy> ||
                                std::is_same_v<S, scorers::spatial_redundancy> ||
                                std::is_same_v<S, scorers::pooled_value_norm>;

template <class S>
using structure_for = std::conditional_t<uses_structure<S>, structures::temporal_frames, structures::sequence>;

/// Large enough for every index a case draws: `drive` fills at most 6,500 + 5 chunks of 2,500
/// tokens, each index at most 3 past the last, 57,000 in all, under 2^16 frames of one token.
/// (1,000 frames were too few for 1 × 1 grids: a merge case of KVCAP_TEST_SEED=4 drew index
/// 1,000, which the structure check refuses, as it should.)
template <class Structure>
Structure make_structure(rng& r) {
  if constexpr (std::is_same_v<Structure, structures::temporal_frames>)
    return {.frames = 1 << 16, .rows = r.between(1, 4), .cols = r.between(1, 4)};
  else
    return {.length = 1 << 20};
}

/// One request of a case: a host executor of one layer, driven through random chunks up to
/// the point where the next call is `compress`.
/// `Budget`: budgets::fixed_tokens, or budgets::head_adaptive (over layouts::varlen) with
/// `min_head_fraction`.
template <class T, layout Layout, class Scorer, class Structure, class Reducer = reducers::evict,
          class Budget = budgets::fixed_tokens>
struct host_request {
  using executor = host::compressor<T, Layout, Scorer, Budget, Reducer, Structure>;
  static constexpr bool shares_heads = head_adaptive_budget<Budget>;
  static constexpr bool windowed = Scorer::inputs.window_mass;
  std::unique_ptr<executor> c;
  Structure structure{};
  index_t budget = 0, max_chunk = 0;
  double min_head_fraction = 0.25;  ///< head-adaptive budgets
  values mode = values::normal;
  index_t next_index = 0, num_protected = 0;
  index_t last_chunk = 0;  ///< tokens of the last append (the device call's `appended`)
  // Window scorers: most window queries, causal (the chunk's tail) or not, and the window of
  // the next compress (see next_window).
  index_t max_window = 0;
  bool causal = true;
  std::vector<T> queries;
  kv_tensor<const T> window{};

  /// Tokens the next append may bring: what every head has room for.
  index_t room() const {
    const auto& view = c->layer(0);
    if constexpr (requires { view.mapping.head_indptr; }) {
      index_t least = max_chunk;  // each head has max_chunk of room after a compress (it is repacked)
      for (index_t head = 0; head < view.mapping.num_heads; ++head)
        least = std::min(least, view.mapping.head_indptr[head + 1] - view.mapping.head_indptr[head] - view.length_of(head));
      return least;
    } else {
      return budget + max_chunk - view.length;
    }
  }

  /// Draws the observation window the next compress uses (none for other scorers).
  void next_window(rng& r) {
    window = {};
    if constexpr (windowed) {
      const index_t heads = c->shape().num_q_heads, dim = c->shape().head_dim, length = c->length(0);
      if (causal && length == 0) return;  // nothing resident: nothing to compress
      const index_t w = r.between(1, causal ? std::min(max_window, length) : max_window);
      queries.resize(static_cast<std::size_t>(w * heads * dim));
      for (auto& x : queries) x = draw<T>(r, mode, nullptr, 0);
      window = {queries.data(), w, heads, dim, r.chance(0.5) ? kv_layout::nhd : kv_layout::hnd};
    }
  }
  /// The host executor's compress with the drawn window.
  void compress() {
    if (windowed && window.data == nullptr) return;
    c->compress(0, window, causal);
  }

  void append_chunk(rng& r, index_t n) {
    const index_t heads = c->shape().num_kv_heads, dim = c->shape().head_dim;
    std::vector<T> k(static_cast<std::size_t>(n * heads * dim)), v(k.size());
    const kv_layout order = r.chance(0.5) ? kv_layout::nhd : kv_layout::hnd;
    const kv_tensor<T> kt{k.data(), n, heads, dim, order}, vt{v.data(), n, heads, dim, order};
    for (index_t tok = 0; tok < n; ++tok)
      for (index_t head = 0; head < heads; ++head) {
        const T* prev_k = tok > 0 ? kt.data + kt.offset(tok - 1, head) : nullptr;
        const T* prev_v = tok > 0 ? vt.data + vt.offset(tok - 1, head) : nullptr;
        for (index_t d = 0; d < dim; ++d) {
          k[kt.offset(tok, head) + d] = draw<T>(r, mode, prev_k, d);
          v[vt.offset(tok, head) + d] = draw<T>(r, mode, prev_v, d);
        }
      }
    std::vector<token_meta> meta(static_cast<std::size_t>(n));
    for (auto& m : meta) {
      next_index += r.chance(0.1) ? r.between(1, 3) : 1;
      m = structure.meta(next_index - 1);
      const bool first_tokens = m.index < 3 && r.chance(0.7);
      if ((first_tokens || r.chance(0.05)) && num_protected < budget) m.is_protected = true, ++num_protected;
    }
    c->append(0, {k.data(), n, heads, dim, order}, {v.data(), n, heads, dim, order}, meta);
    last_chunk = n;
  }

  Budget budget_policy() const {
    if constexpr (shares_heads) return {.tokens = budget, .min_head_fraction = min_head_fraction};
    else return {.tokens = budget};
  }

  /// Random history: a few append + compress rounds, then a last append (no compress).
  /// Window scorers: `window_group` query heads per kv-head, windows `window_causal` or not.
  /// Budgets and chunks are drawn from [min_budget, max_budget] and [min_chunk, max_chunk_limit].
  /// With min_chunk > 0 the cache is first filled to its budget, and the last chunk holds at
  /// least min_chunk tokens.
  void drive(rng& r, index_t heads, index_t dim, const Scorer& scorer, const Structure& s, index_t max_budget = 40,
             index_t max_chunk_limit = 30, index_t window_group = 1, bool window_causal = true, index_t min_budget = 1,
             index_t min_chunk = 0) {
    structure = s;
    budget = r.between(min_budget, max_budget);
    max_chunk = r.between(std::max<index_t>(1, min_chunk), max_chunk_limit);
    mode = static_cast<values>(r.between(0, windowed ? 2 : 3));  // windows: no overflowing logits
    causal = window_causal, max_window = windowed ? r.between(1, 8) : 0;
    const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads * window_group,
                                       .head_dim = dim, .max_chunk = max_chunk, .max_window = max_window};
    c = std::make_unique<executor>(
        shape, typename executor::policies{.scorer = scorer, .budget = budget_policy(), .structure = structure});
    if (min_chunk > 0)  // start full: the drops then lie among `budget` resident tokens
      while (c->length(0) < budget) append_chunk(r, std::min(max_chunk, budget - c->length(0)));
    const index_t rounds = r.between(0, 4);
    for (index_t round = 0; round <= rounds; ++round) {
      const index_t room = this->room();
      append_chunk(r, r.between(round < rounds ? 0 : std::min(room, min_chunk), std::min(room, max_chunk)));
      if (round < rounds) next_window(r), compress();
    }
  }
};

/// The host executor's score of every slot of `head` for a window scorer (host::window_mass,
/// then the scorer through the host's context), to tell near-ties from disagreements.
template <class T, layout Layout, class Scorer, class Structure>
std::vector<float> host_window_scores(const layer_view<T, Layout>& view, index_t head, const Scorer& scorer,
                                      const Structure& structure, const kv_tensor<const T>& window, bool causal) {
  const index_t n = view.length_of(head), dim = view.mapping.head_dim;
  const index_t rows = window.num_tokens * (window.num_heads / view.mapping.num_heads);
  workspace_carver sizer;  // the host executor's own carve, into a buffer of its size
  host::window_mass_workspace::carve(sizer, rows, dim, n);
  std::vector<std::byte> buffer(sizer.bytes());
  workspace_carver carver(buffer.data());
  const auto ws = host::window_mass_workspace::carve(carver, rows, dim, n);
  host::window_mass(view, head, window, causal, ws);
  const index_t next = n > 0 ? view.meta_at(n - 1, head).index + 1 : 0;
  const host::score_context<T, Layout, Structure> ctx{{&view, &structure, head, n}, next, nullptr, ws.mass};
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t tok = 0; tok < n; ++tok) scores[tok] = sanitize_score(scorer.score(ctx, tok));
  return scores;
}

/// The host's scores of every head of `q`'s cache before its compress, for a window scorer
/// with a window drawn (see host_request::next_window); empty otherwise.
template <class Request, class Policies>
std::vector<std::vector<float>> window_scores_before_compress(const Request& q, const Policies& policies,
                                                              bool causal) {
  std::vector<std::vector<float>> scores;
  if constexpr (Request::windowed)
    if (q.window.data != nullptr)
      for (index_t head = 0; head < q.c->shape().num_kv_heads; ++head)
        scores.push_back(host_window_scores(q.c->layer(0), head, policies.scorer, policies.structure, q.window, causal));
  return scores;
}

/// Window scorers (window mass equal to float rounding, not bit for bit): compares the kept
/// set of `got` (`got_lengths` a head) with the host's (`expected`, `expected_lengths`), both
/// compressed from `before`. Each head of `got` must hold its kept tokens in ascending order
/// with the bytes they had in `before`. The kept sets may differ only by tokens whose host
/// scores lie within `tol` of a cutoff: the score of the host's last kept unprotected token in
/// their head, or, when the heads share the view's budget (`shared`), in any head of the view
/// (the competition across heads cuts at one of those), whose totals must then agree. Counts
/// the near-tie swaps in `near_ties`. "" when all holds.
template <class T, layout A, layout B, layout C>
std::string compare_kept_near_ties(const layer_view<T, A>& before, std::span<const index_t> lengths_before,
                                   const std::vector<std::vector<float>>& scores, const layer_view<T, B>& expected,
                                   std::span<const index_t> expected_lengths, const layer_view<T, C>& got,
                                   std::span<const index_t> got_lengths, bool shared, float tol, index_t& near_ties) {
  const index_t heads = before.mapping.num_heads, dim = before.mapping.head_dim;
  const auto kept_indices = [](const auto& view, index_t head, index_t length) {
    std::vector<std::int64_t> indices;
    for (index_t tok = 0; tok < length; ++tok) indices.push_back(view.meta_at(tok, head).index);
    return indices;
  };
  std::vector<std::vector<std::int64_t>> want, have;
  std::vector<float> cutoffs;  // a head's: the host's last kept unprotected score (none: +inf)
  for (index_t head = 0; head < heads; ++head) {
    want.push_back(kept_indices(expected, head, expected_lengths[head]));
    have.push_back(kept_indices(got, head, got_lengths[head]));
    // got: a stable compaction of `before`, rows unchanged.
    index_t from = 0;
    for (index_t tok = 0; tok < got_lengths[head]; ++tok) {
      while (from < lengths_before[head] && before.meta_at(from, head).index != have[head][tok]) ++from;
      if (from == lengths_before[head]) return "kept token not found in order at head " + std::to_string(head);
      if (!(before.meta_at(from, head) == got.meta_at(tok, head)) ||
          std::memcmp(before.k + before.mapping(from, head), got.k + got.mapping(tok, head), dim * sizeof(T)) != 0 ||
          std::memcmp(before.v + before.mapping(from, head), got.v + got.mapping(tok, head), dim * sizeof(T)) != 0)
        return "kept row changed at head " + std::to_string(head) + " slot " + std::to_string(tok);
    }
    float cutoff = HUGE_VALF;
    for (index_t slot = 0; slot < lengths_before[head]; ++slot) {
      const token_meta& m = before.meta_at(slot, head);
      if (!m.is_protected && std::find(want[head].begin(), want[head].end(), m.index) != want[head].end())
        cutoff = std::min(cutoff, scores[head][slot]);
    }
    cutoffs.push_back(cutoff);
  }
  if (shared && std::accumulate(expected_lengths.begin(), expected_lengths.end(), index_t{0}) !=
                    std::accumulate(got_lengths.begin(), got_lengths.end(), index_t{0}))
    return "the view's kept totals differ";
  for (index_t head = 0; head < heads; ++head) {
    if (!shared && got_lengths[head] != expected_lengths[head])
      return "lengths differ at head " + std::to_string(head);
    if (want[head] == have[head]) continue;
    for (index_t slot = 0; slot < lengths_before[head]; ++slot) {
      const std::int64_t index = before.meta_at(slot, head).index;
      const bool in_want = std::find(want[head].begin(), want[head].end(), index) != want[head].end();
      const bool in_have = std::find(have[head].begin(), have[head].end(), index) != have[head].end();
      if (in_want == in_have) continue;
      const float score = scores[head][slot];
      const auto near = [&](float cutoff) { return std::fabs(score - cutoff) <= tol; };
      if (!(shared ? std::any_of(cutoffs.begin(), cutoffs.end(), near) : near(cutoffs[head])))
        return "kept sets differ at head " + std::to_string(head) + " at index " + std::to_string(index) +
               " (score " + std::to_string(score) + ", cutoff " + std::to_string(cutoffs[head]) + ")";
      ++near_ties;
    }
  }
  return {};
}

/// The per-head oracle: scores through the host executor's own context (with the host
/// executor's shared-input and z-score code), ranks with kvcap::ranks_before by a full sort,
/// keeps the first k, compacts stably.
template <class T, layout Layout, class Scorer, class Structure>
void oracle_compress_head(const layer_view<T, Layout>& view, index_t head, index_t length, index_t keep,
                          const Scorer& s, const Structure& structure) {
  if (length <= keep) return;
  const index_t dim = view.mapping.head_dim;
  layer_view<T, Layout> sized = view;
  sized.length = length;
  std::vector<float> mean(static_cast<std::size_t>(dim), 0.f);
  for (index_t tok = 0; tok < length; ++tok) {
    const auto k = sized.key(tok, head);
    const float len = norm(k);
    if (len > 0.f)
      for (index_t i = 0; i < dim; ++i) mean[i] += k[i] / len;
  }
  for (auto& x : mean) x /= static_cast<float>(length);
  const index_t next = sized.meta_at(length - 1, head).index + 1;
  const host::score_context<T, Layout, Structure> ctx{{&sized, &structure, head, length}, next, mean.data(), nullptr};
  std::vector<float> scores(static_cast<std::size_t>(length));
  if constexpr (composite_scorer<Scorer>) {
    constexpr index_t nc = num_components_v<Scorer>;
    std::vector<float> comps(static_cast<std::size_t>(nc * length));
    float mu[nc], inv_std[nc];
    for (index_t c = 0; c < nc; ++c) {
      double sum = 0, sum_sq = 0;
      for (index_t tok = 0; tok < length; ++tok) {
        const float x = comps[c * length + tok] = s.component(ctx, tok, c);
        sum += x, sum_sq += static_cast<double>(x) * x;
      }
      const double m = sum / static_cast<double>(length), var = sum_sq / static_cast<double>(length) - m * m;
      mu[c] = static_cast<float>(m);
      inv_std[c] = var > 0 ? static_cast<float>(1.0 / std::sqrt(var)) : 0.f;
    }
    for (index_t tok = 0; tok < length; ++tok) {
      float z[nc];
      for (index_t c = 0; c < nc; ++c) z[c] = (comps[c * length + tok] - mu[c]) * inv_std[c];
      scores[tok] = sanitize_score(s.combine(ctx, tok, z));
    }
  } else {
    for (index_t tok = 0; tok < length; ++tok) scores[tok] = sanitize_score(s.score(ctx, tok));
  }
  std::vector<rank_key> ranks;
  for (index_t tok = 0; tok < length; ++tok) {
    const token_meta& m = sized.meta_at(tok, head);
    ranks.push_back({scores[tok], m.index, m.is_protected});
  }
  std::vector<index_t> order(static_cast<std::size_t>(length));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return ranks_before(ranks[a], ranks[b]); });
  std::vector<bool> kept(static_cast<std::size_t>(length), false);
  for (index_t i = 0; i < keep; ++i) kept[order[i]] = true;
  index_t dst = 0;
  for (index_t tok = 0; tok < length; ++tok) {
    if (!kept[tok]) continue;
    if (dst != tok) {
      std::memmove(view.k + view.mapping(dst, head), view.k + view.mapping(tok, head), dim * sizeof(T));
      std::memmove(view.v + view.mapping(dst, head), view.v + view.mapping(tok, head), dim * sizeof(T));
      view.meta_at(dst, head) = view.meta_at(tok, head);
    }
    ++dst;
  }
}

}  // namespace kvcap_test
