// The host compressor against a brute-force reference, on thousands of random chunk
// sequences.
//
// The reference keeps the full history of appended tokens (metadata and every head's key
// and value as stored, i.e. already rounded to the storage type). After each compress it
// scores every resident token of every (layer, head) with its own plain float loops (the
// accumulation order of core/vector_math.hpp: sum over dim in index order, in float), sorts
// by (protected desc, score desc, index asc), keeps the first `budget` and restores
// ascending index order. The compressor must hold exactly those tokens, slot by slot, with
// their key and value bytes and their metadata unchanged.
//
// Randomised: layers 1-3, kv-heads 1-4, GQA groups 1-3, head_dim 1-40, budget, max_chunk,
// chunk sizes from 0 to everything that fits (max_chunk once at budget), float / half /
// bfloat16, NHD / HND caches, NHD / HND chunk inputs (independently for k and v), random
// protected tokens, gaps in logical indices, compress skipped at random, and value
// distributions that force exact ties (small integers, duplicated and zero keys).
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_seed.hpp"

namespace {

using namespace kvcap;
using rng_t = std::mt19937_64;

enum class scorer_kind { key_norm, value_norm, recency, key_diff };
enum class value_mode { continuous, small_ints, duplicates, mixed_scale };

struct trial {
  std::uint64_t seed = 0;
  index_t layers = 1, kv_heads = 1, group = 1, dim = 1, budget = 1, max_chunk = 1, num_chunks = 1;
  value_mode mode = value_mode::continuous;
  double protect_prob = 0, skip_compress_prob = 0;
  index_t num_sinks = 0;
};

index_t uniform(rng_t& rng, index_t lo, index_t hi) {  // inclusive
  return std::uniform_int_distribution<index_t>(lo, hi)(rng);
}
bool chance(rng_t& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

// ---- the reference's own maths (independent of kvcap's vector_math) ----------------------
template <class T>
float ref_sq_norm(const T* x, index_t d) {
  float acc = 0.f;
  for (index_t i = 0; i < d; ++i) {
    const float xi = static_cast<float>(x[i]);
    acc += xi * xi;
  }
  return acc;
}
template <class T>
float ref_dot(const T* x, const float* y, index_t d) {
  float acc = 0.f;
  for (index_t i = 0; i < d; ++i) acc += static_cast<float>(x[i]) * y[i];
  return acc;
}

template <class T>
struct ref_layer {
  std::vector<token_meta> metas;      // (history)
  std::vector<std::vector<T>> k, v;   // (history) -> (head, dim)
  std::vector<std::vector<index_t>> resident;  // (head) -> history positions, ascending
};

template <class T>
struct reference {
  index_t heads, dim, budget;
  scorer_kind kind;
  index_t num_sinks;

  float score(const ref_layer<T>& l, index_t pos, index_t head, const std::vector<float>& anchor) const {
    switch (kind) {
      case scorer_kind::key_norm: return -std::sqrt(ref_sq_norm(l.k[pos].data() + head * dim, dim));
      case scorer_kind::value_norm: return std::sqrt(ref_sq_norm(l.v[pos].data() + head * dim, dim));
      case scorer_kind::recency: {
        const auto index = l.metas[pos].index;
        return index < num_sinks ? std::numeric_limits<float>::infinity() : static_cast<float>(index);
      }
      case scorer_kind::key_diff: {
        const T* k = l.k[pos].data() + head * dim;
        float a_sq = 0.f;
        for (index_t i = 0; i < dim; ++i) a_sq += anchor[i] * anchor[i];
        const float denom = std::sqrt(ref_sq_norm(k, dim)) * std::sqrt(a_sq);
        return denom > 0.f ? -ref_dot(k, anchor.data(), dim) / denom : 0.f;
      }
    }
    return 0.f;
  }

  void compress(ref_layer<T>& l) const {
    for (index_t head = 0; head < heads; ++head) {
      auto& res = l.resident[head];
      const index_t n = static_cast<index_t>(res.size());
      if (n <= budget) continue;
      std::vector<float> anchor(static_cast<std::size_t>(dim), 0.f);
      if (kind == scorer_kind::key_diff) {
        for (index_t pos : res) {
          const T* k = l.k[pos].data() + head * dim;
          const float len = std::sqrt(ref_sq_norm(k, dim));
          if (len > 0.f)
            for (index_t i = 0; i < dim; ++i) anchor[i] += static_cast<float>(k[i]) / len;
        }
        for (index_t i = 0; i < dim; ++i) anchor[i] /= static_cast<float>(n);
      }
      struct cand {
        bool prot;
        float score;
        std::int64_t index;
        index_t pos;
      };
      std::vector<cand> all;
      for (index_t pos : res) all.push_back({l.metas[pos].is_protected, score(l, pos, head, anchor), l.metas[pos].index, pos});
      std::sort(all.begin(), all.end(), [](const cand& a, const cand& b) {
        if (a.prot != b.prot) return a.prot;
        if (a.score != b.score) return a.score > b.score;
        return a.index < b.index;
      });
      all.resize(static_cast<std::size_t>(budget));
      std::sort(all.begin(), all.end(), [](const cand& a, const cand& b) { return a.index < b.index; });
      res.clear();
      for (const cand& c : all) res.push_back(c.pos);
    }
  }
};

/// Compares the compressor's layer with the reference; empty when they agree.
template <class T, class View>
std::string compare(const View& view, const ref_layer<T>& ref, index_t heads, index_t dim) {
  const auto expected_length = static_cast<index_t>(ref.resident[0].size());
  for (index_t head = 1; head < heads; ++head)
    if (static_cast<index_t>(ref.resident[head].size()) != expected_length) return "reference heads disagree";
  if (view.length != expected_length)
    return "length " + std::to_string(view.length) + ", expected " + std::to_string(expected_length);
  for (index_t head = 0; head < heads; ++head)
    for (index_t slot = 0; slot < view.length; ++slot) {
      const index_t pos = ref.resident[head][slot];
      const token_meta& m = view.meta_at(slot, head);
      const std::string where = " at head " + std::to_string(head) + " slot " + std::to_string(slot);
      if (m.index != ref.metas[pos].index)
        return "kept index " + std::to_string(m.index) + ", expected " + std::to_string(ref.metas[pos].index) + where;
      if (!(m == ref.metas[pos])) return "metadata changed" + where;
      if (slot > 0 && view.meta_at(slot - 1, head).index >= m.index) return "indices not ascending" + where;
      if (std::memcmp(view.k + view.mapping(slot, head), ref.k[pos].data() + head * dim, dim * sizeof(T)) != 0)
        return "key bytes differ" + where;
      if (std::memcmp(view.v + view.mapping(slot, head), ref.v[pos].data() + head * dim, dim * sizeof(T)) != 0)
        return "value bytes differ" + where;
    }
  return {};
}

template <class T>
T draw_value(rng_t& rng, value_mode mode) {
  switch (mode) {
    case value_mode::continuous: return T(std::uniform_real_distribution<float>(-3.f, 3.f)(rng));
    case value_mode::small_ints:
    case value_mode::duplicates: return T(static_cast<float>(uniform(rng, -2, 2)));
    case value_mode::mixed_scale: {
      const float scale = std::ldexp(1.f, static_cast<int>(uniform(rng, -6, 6)));
      return T(scale * std::uniform_real_distribution<float>(-1.f, 1.f)(rng));
    }
  }
  return T(0.f);
}

/// One head's dim-vector of a new token: random, or (forced ties) a copy of an earlier
/// token's vector, or zero.
template <class T>
void draw_vector(rng_t& rng, value_mode mode, const std::vector<std::vector<T>>& history, index_t head,
                 index_t dim, T* out) {
  if (mode == value_mode::duplicates || mode == value_mode::small_ints) {
    if (!history.empty() && chance(rng, mode == value_mode::duplicates ? 0.6 : 0.1)) {
      const auto& src = history[static_cast<std::size_t>(uniform(rng, 0, static_cast<index_t>(history.size()) - 1))];
      std::copy_n(src.data() + head * dim, dim, out);
      return;
    }
    if (chance(rng, 0.05)) {
      std::fill_n(out, dim, T(0.f));
      return;
    }
  }
  for (index_t i = 0; i < dim; ++i) out[i] = draw_value<T>(rng, mode);
}

template <class T, class Layout, class Scorer>
void run_trial(const trial& t, Scorer scorer_policy, scorer_kind kind) {
  rng_t rng(t.seed);
  const index_t heads = t.kv_heads, dim = t.dim, layers = t.layers;
  host::compressor<T, Layout, Scorer, budgets::fixed_tokens> c(
      {.num_layers = layers, .num_kv_heads = heads, .num_q_heads = heads * t.group, .head_dim = dim,
       .max_chunk = t.max_chunk},
      {.scorer = scorer_policy, .budget = {.tokens = t.budget}});
  const reference<T> ref{heads, dim, t.budget, kind, t.num_sinks};
  std::vector<ref_layer<T>> model(static_cast<std::size_t>(layers));
  for (auto& l : model) l.resident.resize(static_cast<std::size_t>(heads));

  std::int64_t next_index = 0;
  std::int32_t last_t = 0;
  index_t protected_total = 0;
  const auto slot_bytes = static_cast<std::size_t>(heads * (2 * dim * static_cast<index_t>(sizeof(T)) + 40));
  std::vector<T> k_in, v_in;
  std::vector<token_meta> meta;
  std::vector<T> window(static_cast<std::size_t>(heads * t.group * dim), T(0.5f));

  for (index_t chunk = 0; chunk < t.num_chunks; ++chunk) {
    // Every layer holds the same number of tokens (same chunks, same budget, and compress
    // is skipped for all layers of a chunk or none).
    const index_t room = t.budget + t.max_chunk - c.length(0);
    for (index_t layer = 1; layer < layers; ++layer) REQUIRE(c.length(layer) == c.length(0));
    index_t n = 0;
    const index_t pick = uniform(rng, 0, 9);
    if (pick == 0) n = 0;
    else if (pick <= 2) n = std::min(t.max_chunk, room);
    else if (pick == 3) n = room;
    else n = uniform(rng, 0, room);

    meta.assign(static_cast<std::size_t>(n), token_meta{});
    for (index_t tok = 0; tok < n; ++tok) {
      token_meta& m = meta[tok];
      next_index += chance(rng, 0.1) ? uniform(rng, 1, 3) : 0;  // gaps are allowed
      m.index = next_index++;
      last_t += static_cast<std::int32_t>(uniform(rng, 0, 2));
      m.position = {last_t, static_cast<std::int32_t>(uniform(rng, -5, 50)), static_cast<std::int32_t>(uniform(rng, 0, 99))};
      m.frame = static_cast<std::int32_t>(uniform(rng, 0, 7));
      m.row = static_cast<std::int16_t>(uniform(rng, 0, 30));
      m.col = static_cast<std::int16_t>(uniform(rng, 0, 30));
      m.segment = static_cast<std::uint16_t>(uniform(rng, 0, 4));
      m.kind = segment_kind::text;  // structures::sequence accepts text only
      if (protected_total < t.budget && chance(rng, t.protect_prob)) m.is_protected = true, ++protected_total;
    }

    // Compress may be skipped as long as the next chunk still fits.
    const bool skip_compress = chance(rng, t.skip_compress_prob);
    for (index_t layer = 0; layer < layers; ++layer) {
      auto& l = model[layer];
      const kv_layout k_order = chance(rng, 0.5) ? kv_layout::nhd : kv_layout::hnd;
      const kv_layout v_order = chance(rng, 0.5) ? kv_layout::nhd : kv_layout::hnd;
      k_in.assign(static_cast<std::size_t>(n * heads * dim), T(0.f));
      v_in.assign(k_in.size(), T(0.f));
      const kv_tensor<T> kt{k_in.data(), n, heads, dim, k_order}, vt{v_in.data(), n, heads, dim, v_order};
      const std::size_t history_before = l.metas.size();
      for (index_t tok = 0; tok < n; ++tok) {
        std::vector<T> kr(static_cast<std::size_t>(heads * dim)), vr(kr.size());
        for (index_t head = 0; head < heads; ++head) {
          draw_vector(rng, t.mode, l.k, head, dim, kr.data() + head * dim);
          draw_vector(rng, t.mode, l.v, head, dim, vr.data() + head * dim);
          // The chunk's own order, spelled out here (not through kv_tensor::offset).
          const auto at = [&](kv_layout order) {
            return order == kv_layout::nhd ? (tok * heads + head) * dim : (head * n + tok) * dim;
          };
          std::copy_n(kr.data() + head * dim, dim, kt.data + at(k_order));
          std::copy_n(vr.data() + head * dim, dim, vt.data + at(v_order));
        }
        l.metas.push_back(meta[tok]);
        l.k.push_back(std::move(kr));
        l.v.push_back(std::move(vr));
      }
      c.append(layer, {kt.data, n, heads, dim, k_order}, {vt.data, n, heads, dim, v_order}, meta);
      for (auto& res : l.resident)
        for (std::size_t p = history_before; p < l.metas.size(); ++p) res.push_back(static_cast<index_t>(p));

      CHECK(c.length(layer) <= t.budget + t.max_chunk);
      CHECK(c.logical_length(layer) == next_index);
      const std::string after_append = compare(c.layer(layer), l, heads, dim);
      CHECK_MESSAGE(after_append.empty(), "after append, chunk ", chunk, " layer ", layer, ": ", after_append);

      if (skip_compress) continue;
      if (chance(rng, 0.2)) {
        // A correctly shaped (empty) observation window changes nothing for these scorers.
        c.compress(layer, {window.data(), 0, heads * t.group, dim});
      } else {
        c.compress(layer);
      }
      ref.compress(l);
      CHECK(c.length(layer) <= t.budget);
      CHECK(c.logical_length(layer) == next_index);
      const std::string after_compress = compare(c.layer(layer), l, heads, dim);
      CHECK_MESSAGE(after_compress.empty(), "after compress, chunk ", chunk, " layer ", layer, ": ", after_compress);
      if (!after_append.empty() || !after_compress.empty()) return;  // one report per trial
    }
    std::size_t resident = 0;
    for (index_t layer = 0; layer < layers; ++layer) resident += static_cast<std::size_t>(c.length(layer));
    CHECK(c.memory().resident_bytes == resident * slot_bytes);
  }
  for (index_t layer = 0; layer < layers; ++layer) {  // the end of the prompt
    c.compress(layer);
    ref.compress(model[layer]);
    CHECK(c.length(layer) <= t.budget);
    CHECK(compare(c.layer(layer), model[layer], heads, dim).empty());
  }
}

template <class T, class Layout>
void dispatch_scorer(const trial& t, scorer_kind kind) {
  switch (kind) {
    case scorer_kind::key_norm: return run_trial<T, Layout>(t, scorers::key_norm{}, kind);
    case scorer_kind::value_norm: return run_trial<T, Layout>(t, scorers::value_norm{}, kind);
    case scorer_kind::recency: return run_trial<T, Layout>(t, scorers::recency{.num_sinks = t.num_sinks}, kind);
    case scorer_kind::key_diff: return run_trial<T, Layout>(t, scorers::key_diff{}, kind);
  }
}

template <class T>
void dispatch_layout(const trial& t, scorer_kind kind, bool hnd) {
  if (hnd) dispatch_scorer<T, layouts::hnd>(t, kind);
  else dispatch_scorer<T, layouts::nhd>(t, kind);
}

const char* dtype_name(int d) { return d == 0 ? "float" : d == 1 ? "half" : "bfloat16"; }
const char* mode_name(value_mode m) {
  switch (m) {
    case value_mode::continuous: return "continuous";
    case value_mode::small_ints: return "small_ints";
    case value_mode::duplicates: return "duplicates";
    case value_mode::mixed_scale: return "mixed_scale";
  }
  return "?";
}

/// `count` random trials of one scorer.
void run_trials(scorer_kind kind, std::uint64_t base_seed, int count, bool force_ties) {
  rng_t meta_rng(kvcap_test::shifted(base_seed));
  for (int i = 0; i < count; ++i) {
    trial t;
    t.seed = meta_rng();
    t.layers = uniform(meta_rng, 1, 3);
    t.kv_heads = uniform(meta_rng, 1, 4);
    t.group = uniform(meta_rng, 1, 3);
    t.dim = chance(meta_rng, 0.2) ? uniform(meta_rng, 1, 3) : uniform(meta_rng, 1, 40);
    t.budget = chance(meta_rng, 0.2) ? uniform(meta_rng, 1, 4) : uniform(meta_rng, 1, 48);
    t.max_chunk = chance(meta_rng, 0.2) ? uniform(meta_rng, 1, 3) : uniform(meta_rng, 1, 40);
    t.num_chunks = uniform(meta_rng, 1, 14);
    t.mode = force_ties ? (chance(meta_rng, 0.5) ? value_mode::duplicates : value_mode::small_ints)
                        : static_cast<value_mode>(uniform(meta_rng, 0, 3));
    t.protect_prob = chance(meta_rng, 0.5) ? 0.0 : std::uniform_real_distribution<double>(0, 0.3)(meta_rng);
    t.skip_compress_prob = chance(meta_rng, 0.7) ? 0.0 : 0.3;
    t.num_sinks = uniform(meta_rng, 0, 6);
    const int dtype = static_cast<int>(uniform(meta_rng, 0, 2));
    const bool hnd = chance(meta_rng, 0.5);
    INFO("trial ", i, " seed ", t.seed, ": ", dtype_name(dtype), hnd ? " hnd" : " nhd", " layers ", t.layers,
         " heads ", t.kv_heads, "x", t.group, " dim ", t.dim, " budget ", t.budget, " max_chunk ", t.max_chunk,
         " chunks ", t.num_chunks, " ", mode_name(t.mode), " sinks ", t.num_sinks);
    switch (dtype) {
      case 0: dispatch_layout<float>(t, kind, hnd); break;
      case 1: dispatch_layout<Eigen::half>(t, kind, hnd); break;
      default: dispatch_layout<Eigen::bfloat16>(t, kind, hnd); break;
    }
  }
}

constexpr int trials_per_scorer = 700;
constexpr int tie_trials_per_scorer = 300;

}  // namespace

TEST_CASE("reference: key_norm on random chunk sequences") {
  run_trials(scorer_kind::key_norm, 0x6b6e6f726d, trials_per_scorer, false);
}
TEST_CASE("reference: value_norm on random chunk sequences") {
  run_trials(scorer_kind::value_norm, 0x766e6f726d, trials_per_scorer, false);
}
TEST_CASE("reference: recency + sinks on random chunk sequences") {
  run_trials(scorer_kind::recency, 0x726563656e, trials_per_scorer, false);
}
TEST_CASE("reference: key_diff on random chunk sequences") {
  run_trials(scorer_kind::key_diff, 0x6b64696666, trials_per_scorer, false);
}
TEST_CASE("reference: forced ties (duplicated, zero and small-integer keys and values)") {
  run_trials(scorer_kind::key_norm, 0x7469657331, tie_trials_per_scorer, true);
  run_trials(scorer_kind::value_norm, 0x7469657332, tie_trials_per_scorer, true);
  run_trials(scorer_kind::key_diff, 0x7469657333, tie_trials_per_scorer, true);
  run_trials(scorer_kind::recency, 0x7469657334, tie_trials_per_scorer / 3, true);
}
