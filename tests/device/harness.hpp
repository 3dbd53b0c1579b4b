#pragma once
// tests/device/harness.hpp — randomized cases shared by the CPU tests of the device algorithm
// (host reference) and the GPU tests: host executors driven through random chunks, images of
// their caches in other arrangements of the same layout (shuffled page pools, padded per-head
// runs), an independent oracle for per-head lengths and budgets, and byte comparisons.
// Plain C++ (no CUDA): the GPU tests copy these host images to the device.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <kvcap/budgets/fixed_tokens.hpp>
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

namespace kvcap_test {
using namespace kvcap;

struct rng {
  std::mt19937_64 g;
  explicit rng(std::uint64_t seed) : g(seed) {}
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
  else return "varlen";
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
    case values::huge: {
      const float x = r.normal();
      if constexpr (sizeof(T) >= 4) return static_cast<T>(r.chance(0.2) ? x * 1e30f : x);
      else return static_cast<T>(r.chance(0.2) ? std::clamp(x * 2e4f, -6e4f, 6e4f) : x);  // 16-bit: top of the range
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
    view.k = k.data(), view.v = v.data(), view.meta = meta.data();
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
  img.v.assign(elems, static_cast<T>(-7.f));
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

/// A random scorer of each kind.
template <class S>
S make_scorer(rng& r) {
  if constexpr (std::is_same_v<S, scorers::recency>) return {.num_sinks = r.between(0, 6)};
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

template <class Structure>
Structure make_structure(rng& r) {
  if constexpr (std::is_same_v<Structure, structures::temporal_frames>)
    return {.frames = 1000, .rows = r.between(1, 4), .cols = r.between(1, 4)};
  else
    return {.length = 1 << 20};
}

/// One request of a case: a host executor of one layer, driven through random chunks up to
/// the point where the next call is `compress`.
template <class T, layout Layout, class Scorer, class Structure, class Reducer = reducers::evict>
struct host_request {
  using executor = host::compressor<T, Layout, Scorer, budgets::fixed_tokens, Reducer, Structure>;
  std::unique_ptr<executor> c;
  Structure structure{};
  index_t budget = 0, max_chunk = 0;
  values mode = values::normal;
  index_t next_index = 0, num_protected = 0;

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
  }

  /// Random history: a few append + compress rounds, then a last append (no compress).
  void drive(rng& r, index_t heads, index_t dim, const Scorer& scorer, const Structure& s, index_t max_budget = 40,
             index_t max_chunk_limit = 30) {
    structure = s;
    budget = r.between(1, max_budget);
    max_chunk = r.between(1, max_chunk_limit);
    mode = static_cast<values>(r.between(0, 3));
    const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim,
                                       .max_chunk = max_chunk};
    c = std::make_unique<executor>(
        shape, typename executor::policies{.scorer = scorer, .budget = {.tokens = budget}, .structure = structure});
    const index_t rounds = r.between(0, 4);
    for (index_t round = 0; round <= rounds; ++round) {
      const index_t room = budget + max_chunk - c->length(0);
      append_chunk(r, r.between(0, std::min(room, max_chunk)));
      if (round < rounds) c->compress(0);
    }
  }
};

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
  const host::score_context<T, Layout, Structure> ctx{{&sized, &structure, head}, next, mean.data(), nullptr};
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
