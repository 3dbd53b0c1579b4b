// kv_store.hpp — where the engine keeps each layer's K and V, behind one small interface:
//
//   full_cache       every token, as an engine without kvcap keeps it (a fixed capacity:
//                    what a KV memory cap allows)
//   compressed_cache kvcap's host::compressor, called exactly as DESIGN.md's engine loop says:
//                    append the chunk, attend, compress back to the budget; optionally the
//                    offline oracle instead (no compression during prefill, one compress_to
//                    to the budget at the end). Every kv-head keeps the budget, or, with the
//                    head_adaptive budget policy, a layer's heads share budget · kv_heads by
//                    score (budgets::head_adaptive over layouts::varlen: heads hold different
//                    counts, and the attention reads each head's own length)
//
// Window scorers look at an observation window of queries: by default the chunk's last
// queries (the chunk's tail, causal). A scorer name ending in "@question" scores every chunk
// by the question's queries instead, from a short pre-pass over the system prompt and the
// question at its final positions (engine::question_prepass): a proxy window, which sees
// every resident token.
//
// The model (model.hpp) calls append → attend → end_of_chunk per layer and chunk, and never
// knows which store it runs on. The scorer and reducer are compile-time policies of the
// compressor; make_store() maps their command-line names to instantiations.
#pragma once

#include <kvcap.hpp>
#include <kvcap/budgets/head_adaptive.hpp>
#include <kvcap/host/counting_resource.hpp>
#include <kvcap/layouts/varlen.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "attention.hpp"

namespace smollm2 {

using kvcap::index_t;

struct store_shape {
  index_t layers = 0, kv_heads = 0, q_heads = 0, head_dim = 0;
};

/// The last `n` tokens of a (T, heads, dim) NHD tensor.
inline kvcap::kv_tensor<const float> last_tokens(kvcap::kv_tensor<const float> t, index_t n) {
  n = std::min(n, t.num_tokens);
  return {t.data + (t.num_tokens - n) * t.num_heads * t.head_dim, n, t.num_heads, t.head_dim};
}

/// Per layer, the newest `window` queries seen (what window scorers compress with at the end
/// of a prompt): (layers, window, q_heads, dim), allocated once.
class query_windows {
 public:
  query_windows() = default;
  query_windows(const store_shape& s, index_t window)
      : shape_(s), window_(window),
        data_(static_cast<std::size_t>(s.layers) * window * s.q_heads * s.head_dim, 0.0f),
        tokens_(static_cast<std::size_t>(s.layers), 0) {}

  bool empty() const { return window_ == 0; }
  /// The most queries a layer's window holds.
  index_t capacity() const { return window_; }
  /// Keeps the last `window` tokens of `q` (T, q_heads, dim) as the layer's window.
  void keep_tail(index_t layer, kvcap::kv_tensor<const float> q) {
    const auto tail = last_tokens(q, window_);
    std::copy_n(tail.data, tail.num_tokens * shape_.q_heads * shape_.head_dim, data_.data() + offset(layer));
    tokens_[layer] = tail.num_tokens;
  }
  kvcap::kv_tensor<const float> operator[](index_t layer) const {
    return {data_.data() + offset(layer), empty() ? 0 : tokens_[layer], shape_.q_heads, shape_.head_dim};
  }

 private:
  std::size_t offset(index_t layer) const {
    return static_cast<std::size_t>(layer) * window_ * shape_.q_heads * shape_.head_dim;
  }

  store_shape shape_{};
  index_t window_ = 0;
  std::vector<float> data_;
  std::vector<index_t> tokens_;
};

class full_cache;

class kv_store {
 public:
  virtual ~kv_store() = default;
  /// The chunk's keys and values (T, kv_heads, dim), after RoPE, at the end of the layer.
  virtual void append(index_t layer, kvcap::kv_tensor<const float> k, kvcap::kv_tensor<const float> v,
                      std::span<const kvcap::token_meta> meta) = 0;
  /// Attention of the chunk's queries over the layer's resident keys (attention.hpp).
  virtual void attend(index_t layer, const float* q, index_t tokens, const std::int64_t* q_pos,
                      attention_scratch& scratch, float* out) const = 0;
  /// After the layer's attention: the compressed store compresses here; `q` (T, q_heads, dim)
  /// are the chunk's queries, for scorers that look at an observation window.
  virtual void end_of_chunk(index_t /*layer*/, kvcap::kv_tensor<const float> /*q*/) {}
  /// After the whole prompt: the oracle compresses here.
  virtual void end_of_prefill() {}
  virtual index_t length(index_t layer) const = 0;
  /// Bytes this store holds for K/V (and, for kvcap, its metadata and workspace), as measured.
  virtual std::size_t bytes() const = 0;
  /// What bytes() should be, from the formula (full: capacity × token bytes; kvcap: layers ×
  /// (budget + max_chunk) × slot bytes + workspace).
  virtual std::size_t formula_bytes() const = 0;
  virtual std::string describe() const = 0;
  /// Oracle stores only: take over a full cache's prompt (K/V, metadata and the newest
  /// window of queries per layer), as if it had been prefilled through this store, then
  /// end_of_prefill(). Lets many oracle runs share one uncompressed prefill.
  virtual void replay(const full_cache&) { throw std::logic_error(describe() + ": replay is for oracle stores"); }

  double kvcap_seconds = 0;  ///< wall time spent inside kvcap calls (append + compress)
};

/// Every token of the prompt, up to a fixed capacity, in one HND view per layer.
class full_cache final : public kv_store {
 public:
  full_cache(const store_shape& s, index_t capacity) : shape_(s), capacity_(capacity) {
    const auto n = static_cast<std::size_t>(capacity) * s.kv_heads * s.head_dim;
    for (index_t l = 0; l < s.layers; ++l) {
      k_.emplace_back(n);
      v_.emplace_back(n);
      meta_.emplace_back(static_cast<std::size_t>(capacity) * s.kv_heads);
    }
    length_.assign(static_cast<std::size_t>(s.layers), 0);
  }

  /// Bytes of K and V per token (all layers): what a KV memory cap divides.
  static std::size_t token_bytes(const store_shape& s) {
    return static_cast<std::size_t>(s.layers) * 2 * s.kv_heads * s.head_dim * sizeof(float);
  }
  index_t capacity() const { return capacity_; }

  /// Keep the newest `window` queries of each layer's latest chunk (what an oracle replay needs).
  void record_windows(index_t window) { windows_ = query_windows(shape_, window); }
  /// The recorded window of `layer`: (tokens, q_heads, dim).
  kvcap::kv_tensor<const float> window(index_t layer) const { return windows_[layer]; }
  const query_windows& windows() const { return windows_; }
  void end_of_chunk(index_t layer, kvcap::kv_tensor<const float> q) override {
    if (!windows_.empty()) windows_.keep_tail(layer, q);
  }

  void append(index_t layer, kvcap::kv_tensor<const float> k, kvcap::kv_tensor<const float> v,
              std::span<const kvcap::token_meta> meta) override {
    index_t& len = length_[layer];
    if (len + k.num_tokens > capacity_)
      throw std::length_error("full_cache: " + std::to_string(len + k.num_tokens) + " tokens do not fit its capacity of " +
                              std::to_string(capacity_) + " tokens (" + std::to_string(bytes()) + " bytes of KV)");
    const auto dst = view(layer);
    for (index_t t = 0; t < k.num_tokens; ++t)
      for (index_t h = 0; h < shape_.kv_heads; ++h) {
        std::copy_n(k.data + k.offset(t, h), shape_.head_dim, dst.k + dst.mapping(len + t, h));
        std::copy_n(v.data + v.offset(t, h), shape_.head_dim, dst.v + dst.mapping(len + t, h));
        dst.meta_at(len + t, h) = meta[t];
      }
    len += k.num_tokens;
  }
  void attend(index_t layer, const float* q, index_t tokens, const std::int64_t* q_pos, attention_scratch& scratch,
              float* out) const override {
    smollm2::attend(view(layer), q, tokens, shape_.q_heads, q_pos, scratch, out);
  }
  index_t length(index_t layer) const override { return length_[layer]; }
  std::size_t bytes() const override { return token_bytes(shape_) * capacity_; }
  std::size_t formula_bytes() const override { return token_bytes(shape_) * capacity_; }
  std::string describe() const override { return "full cache"; }

  kvcap::layer_view<float, kvcap::layouts::hnd> view(index_t layer) const {
    kvcap::layer_view<float, kvcap::layouts::hnd> v;
    v.mapping = {capacity_, shape_.kv_heads, shape_.head_dim};
    v.k = const_cast<float*>(k_[layer].data());
    v.v = const_cast<float*>(v_[layer].data());
    v.meta = const_cast<kvcap::token_meta*>(meta_[layer].data());
    v.length = length_[layer];
    return v;
  }

 private:
  store_shape shape_;
  index_t capacity_;
  std::vector<std::vector<float>> k_, v_;
  std::vector<std::vector<kvcap::token_meta>> meta_;
  std::vector<index_t> length_;
  query_windows windows_;
};

/// The suffix of a scorer name that scores by the question's pre-pass queries.
inline constexpr std::string_view question_suffix = "@question";

inline bool scores_by_question(std::string_view scorer) { return scorer.ends_with(question_suffix); }

/// What the command line can choose.
struct compression_options {
  std::string scorer = "key_diff";  ///< see scorer_names(); a window scorer may end in "@question"
  std::string reducer = "evict";    ///< evict | merge
  index_t budget = 512;             ///< tokens per layer and kv-head (head_adaptive: on average)
  index_t max_chunk = 256;          ///< largest chunk appended
  index_t window = 32;              ///< observation-window queries (window scorers)
  index_t sinks = 4;                ///< sink tokens for recency / snapkv
  /// uniform: every kv-head keeps the budget; head_adaptive: a layer's heads share budget ·
  /// kv_heads by score, each keeping at least head_floor · budget (AdaKV-style)
  std::string budget_policy = "uniform";
  double head_floor = 0.2;
  bool oracle = false;              ///< compress once after the prompt instead of after every chunk
  index_t prompt_tokens = 0;        ///< oracle only: the prompt it must hold uncompressed
  /// "@question" scorers: the question's queries per layer (engine::question_prepass), the
  /// window every chunk (online) or the whole prompt (oracle) is scored by. Not owned; it
  /// outlives the store.
  const query_windows* question = nullptr;
};

inline std::span<const char* const> scorer_names() {
  static constexpr const char* names[] = {"recency", "key_norm", "value_norm", "key_diff",
                                          "window",  "snapkv",   "window+key_diff"};
  return names;
}

/// kvcap's compressor over float storage and text structure: HND with a token budget per head,
/// or per-head lengths (varlen) with a head-adaptive budget.
template <class Scorer, class Reducer, class Budget = kvcap::budgets::fixed_tokens>
class compressed_cache final : public kv_store {
  static constexpr bool adaptive = kvcap::head_adaptive_budget<Budget>;
  using layout = std::conditional_t<adaptive, kvcap::layouts::varlen, kvcap::layouts::hnd>;
  using compressor = kvcap::host::compressor<float, layout, Scorer, Budget, Reducer, kvcap::structures::sequence>;
  static constexpr bool needs_window = Scorer::inputs.window_mass;
  /// The budget policy at `tokens` per head (the budget, or the oracle's whole prompt).
  static Budget budget_policy(const compression_options& o, index_t tokens) {
    if constexpr (adaptive) return {.tokens = tokens, .min_head_fraction = o.head_floor};
    else return {.tokens = tokens};
  }
  /// The most window queries one compress sees: the chunk's tail, or the question.
  static index_t max_window(const compression_options& o) {
    if (!needs_window) return 0;
    return o.question ? std::max(o.window, o.question->capacity()) : o.window;
  }

 public:
  compressed_cache(const store_shape& s, const compression_options& o, Scorer scorer, std::string name)
      : shape_(s), options_(o), name_(std::move(name)), memory_(std::pmr::new_delete_resource()),
        kv_(kvcap::host::compressor_shape{.num_layers = s.layers,
                                          .num_kv_heads = s.kv_heads,
                                          .num_q_heads = s.q_heads,
                                          .head_dim = s.head_dim,
                                          .max_chunk = o.max_chunk,
                                          .max_window = max_window(o)},
            {.scorer = scorer, .budget = budget_policy(o, o.oracle ? std::max(o.prompt_tokens, o.budget) : o.budget)},
            &memory_) {
    if (o.question && !needs_window)
      throw std::invalid_argument("--scorer " + name_ + ": only window scorers score by the question (window, snapkv, "
                                  "window+key_diff)");
    if (o.oracle && needs_window) windows_ = query_windows(s, o.window);  // the prompt's last queries, per layer
  }

  /// The formula: storage for (budget + max_chunk) slots per layer (plus, per head, its
  /// length and offset), plus the workspace (head_adaptive: for the longest a head can get).
  static std::size_t formula(const store_shape& s, const Budget& b, index_t max_chunk, index_t max_window) {
    const kvcap::host::compressor_shape c{.num_layers = s.layers, .num_kv_heads = s.kv_heads, .num_q_heads = s.q_heads,
                                          .head_dim = s.head_dim, .max_chunk = max_chunk, .max_window = max_window};
    const index_t capacity = b.tokens + max_chunk;
    const std::size_t storage =
        static_cast<std::size_t>(s.layers) * (capacity * compressor::slot_bytes(c) + compressor::per_head_bookkeeping_bytes(c));
    if constexpr (adaptive)
      return storage + compressor::workspace_bytes(c, capacity, compressor::head_capacity(c, b.tokens, b));
    else return storage + compressor::workspace_bytes(c, capacity);
  }

  void append(index_t layer, kvcap::kv_tensor<const float> k, kvcap::kv_tensor<const float> v,
              std::span<const kvcap::token_meta> meta) override {
    const auto t0 = std::chrono::steady_clock::now();
    kv_.append(layer, k, v, meta);
    kvcap_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void attend(index_t layer, const float* q, index_t tokens, const std::int64_t* q_pos, attention_scratch& scratch,
              float* out) const override {
    smollm2::attend(kv_.layer(layer), q, tokens, shape_.q_heads, q_pos, scratch, out);
  }
  void end_of_chunk(index_t layer, kvcap::kv_tensor<const float> q) override {
    if (options_.oracle) {  // remember the newest window; compress only at the end of the prompt
      if constexpr (needs_window) windows_.keep_tail(layer, q);
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (needs_window) {
      if (options_.question) kv_.compress(layer, (*options_.question)[layer], /*window_is_chunk_tail=*/false);
      else kv_.compress(layer, last_tokens(q, options_.window));
    } else {
      kv_.compress(layer);
    }
    kvcap_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void end_of_prefill() override {
    if (!options_.oracle) return;
    const auto t0 = std::chrono::steady_clock::now();
    for (index_t l = 0; l < shape_.layers; ++l) {
      if constexpr (needs_window) {
        if (options_.question) kv_.compress_to(l, options_.budget, (*options_.question)[l], /*window_is_chunk_tail=*/false);
        else kv_.compress_to(l, options_.budget, windows_[l]);
      } else {
        kv_.compress_to(l, options_.budget);
      }
    }
    kvcap_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void replay(const full_cache& full) override {
    if (!options_.oracle) kv_store::replay(full);
    const index_t hd = shape_.head_dim, kvh = shape_.kv_heads;
    std::vector<float> k(static_cast<std::size_t>(options_.max_chunk * kvh * hd)), v(k.size());
    std::vector<kvcap::token_meta> meta(static_cast<std::size_t>(options_.max_chunk));
    for (index_t l = 0; l < shape_.layers; ++l) {
      const auto src = full.view(l);
      for (index_t first = 0; first < src.length; first += options_.max_chunk) {
        const index_t n = std::min(options_.max_chunk, src.length - first);
        for (index_t t = 0; t < n; ++t) {
          for (index_t h = 0; h < kvh; ++h) {
            std::copy_n(src.k + src.mapping(first + t, h), hd, k.data() + (t * kvh + h) * hd);
            std::copy_n(src.v + src.mapping(first + t, h), hd, v.data() + (t * kvh + h) * hd);
          }
          meta[t] = src.meta_at(first + t, 0);
        }
        append(l, {k.data(), n, kvh, hd}, {v.data(), n, kvh, hd}, std::span(meta).first(n));
      }
      if constexpr (needs_window) {
        const auto w = full.window(l);
        if (w.num_tokens == 0) throw std::logic_error("replay: the full cache recorded no query window");
        windows_.keep_tail(l, w);
      }
    }
    end_of_prefill();
  }
  index_t length(index_t layer) const override { return kv_.length(layer); }
  std::size_t bytes() const override { return memory_.peak_bytes(); }
  std::size_t formula_bytes() const override {
    return formula(shape_, kv_.policy().budget, options_.max_chunk, max_window(options_));
  }
  std::string describe() const override {
    return std::string(options_.oracle ? "oracle " : "kvcap ") + name_ + "/" + options_.reducer + " budget " +
           std::to_string(options_.budget) + (adaptive ? " head_adaptive" : "");
  }
  const compressor& kv() const { return kv_; }

 private:
  store_shape shape_;
  compression_options options_;
  std::string name_;
  kvcap::host::counting_resource memory_;  // kvcap allocates only through it: its peak is measured here
  compressor kv_;
  query_windows windows_;  // oracle + window scorer only
};

namespace detail {
template <class Reducer, class Budget>
std::unique_ptr<kv_store> make_compressed(const store_shape& s, const compression_options& o) {
  namespace sc = kvcap::scorers;
  const std::string& name = o.scorer;  // the policy below is chosen by the name without "@question"
  const std::string n = name.substr(0, name.size() - (scores_by_question(name) ? question_suffix.size() : 0));
  const auto store = [&]<class Scorer>(Scorer scorer) -> std::unique_ptr<kv_store> {
    return std::make_unique<compressed_cache<Scorer, Reducer, Budget>>(s, o, scorer, name);
  };
  if (n == "recency") return store(sc::recency{o.sinks});
  if (n == "key_norm") return store(sc::key_norm{});
  if (n == "value_norm") return store(sc::value_norm{});
  if (n == "key_diff") return store(sc::key_diff{});
  if (n == "window") return store(sc::observation_window{});
  // SnapKV as published: window scores, the window itself and sinks always kept
  if (n == "snapkv") return store(sc::forced_keep<sc::observation_window>{{}, o.sinks, o.window});
  if (n == "window+key_diff")
    return store(sc::forced_keep<sc::blend<sc::observation_window, sc::key_diff>>{{}, o.sinks, o.window});
  std::string known;
  for (const char* name : scorer_names()) known += std::string(known.empty() ? "" : ", ") + name;
  throw std::invalid_argument("--scorer " + name + ": unknown, expected one of " + known +
                              " (a window scorer may end in @question)");
}

template <class Budget>
std::unique_ptr<kv_store> make_with_budget(const store_shape& s, const compression_options& o) {
  if (o.reducer == "evict") return make_compressed<kvcap::reducers::evict, Budget>(s, o);
  if (o.reducer == "merge") return make_compressed<kvcap::reducers::merge, Budget>(s, o);
  throw std::invalid_argument("--reducer " + o.reducer + ": unknown, expected evict or merge");
}
}  // namespace detail

/// The kvcap store the options name (online, or the offline oracle).
inline std::unique_ptr<kv_store> make_store(const store_shape& s, compression_options o) {
  if (!scores_by_question(o.scorer)) o.question = nullptr;  // only "@question" scorers use it
  else if (!o.question || o.question->empty())
    throw std::invalid_argument("--scorer " + o.scorer + ": scores by the question's queries, and this task has none "
                                "(passkey and demo have a question)");
  if (o.budget <= 0) throw std::invalid_argument("--budget " + std::to_string(o.budget) + ": expected > 0");
  if (o.max_chunk <= 0) throw std::invalid_argument("--chunk " + std::to_string(o.max_chunk) + ": expected > 0");
  if (o.budget_policy == "uniform") return detail::make_with_budget<kvcap::budgets::fixed_tokens>(s, o);
  if (o.budget_policy == "head_adaptive") {
    if (!(o.head_floor >= 0 && o.head_floor <= 1))
      throw std::invalid_argument("--head-floor " + std::to_string(o.head_floor) + ": expected a fraction in [0, 1]");
    return detail::make_with_budget<kvcap::budgets::head_adaptive>(s, o);
  }
  throw std::invalid_argument("--budget-policy " + o.budget_policy + ": unknown, expected uniform or head_adaptive");
}

}  // namespace smollm2
