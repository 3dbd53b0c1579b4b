#pragma once
// kvcap/host/compressor.hpp — the host executor: per-layer caches kept at a budget during
// chunked prefill.
//
// The engine loop, for each chunk and each layer:
//
//   c.append(layer, k, v, meta);        // resident ≤ budget + chunk: the peak
//   auto view = c.layer(layer);         // attend over view.k / view.v, slots [0, length)
//   c.compress(layer);                  // back to ≤ budget
//
// Storage (K, V and metadata per layer, capacity = budget + max_chunk) and the scoring
// workspace are allocated at construction, through a caller-supplied std::pmr resource,
// or the storage is the engine's own (views). Nothing allocates afterwards. (The
// compressor's own record of each layer, a few dozen bytes, is an ordinary member vector:
// what the resource sees is exactly the peak formula, README.md.) Every argument
// is validated before anything is written: a call that throws kvcap::error leaves the
// cache byte-identical.
//
// This class holds the state and the order of the steps; the checks are in validation.hpp
// (with compressor_shape), the policy-free steps of a compress (select, compact, repack) in
// select_compact.hpp, the window scorers' attention mass in window_mass.hpp, and what a
// policy sees of the cache in contexts.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <span>
#include <vector>

#include "../budgets/concept.hpp"
#include "../budgets/head_adaptive.hpp"
#include "../core/error.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../core/ranking.hpp"
#include "../core/segment_sums.hpp"
#include "../core/workspace.hpp"
#include "window_mass.hpp"
#include "../reducers/concept.hpp"
#include "../reducers/evict.hpp"
#include "../scorers/concept.hpp"
#include "../structures/concept.hpp"
#include "../structures/sequence.hpp"
#include "contexts.hpp"
#include "select_compact.hpp"
#include "validation.hpp"

namespace kvcap::host {

/// Memory of a compressor in bytes.
struct memory_stats {
  std::size_t storage_bytes = 0;    ///< K, V and metadata capacity of all layers
  std::size_t workspace_bytes = 0;  ///< scoring and selection workspace
  std::size_t resident_bytes = 0;   ///< K, V and metadata of the tokens resident now
  std::size_t peak_resident_bytes = 0;
  std::size_t total_bytes() const { return storage_bytes + workspace_bytes; }
};

template <class T, layout Layout, any_scorer Scorer, budget Budget, reducer Reducer = reducers::evict,
          structure Structure = structures::sequence>
class compressor {
 public:
  using element_type = T;
  using view_type = layer_view<T, Layout>;
  /// Heads hold different token counts: a per-head variable-length layout (layouts::varlen),
  /// repacked after every compress so that each head has max_chunk of room.
  static constexpr bool per_head_lengths = requires(typename Layout::mapping m) { m.head_indptr; };
  /// Heads share the layer's budget by score (budgets::head_adaptive).
  static constexpr bool adaptive_heads = head_adaptive_budget<Budget>;
  static_assert(!adaptive_heads || per_head_lengths,
                "a head-adaptive budget frees memory only in a per-head variable-length layout (layouts::varlen)");

  struct policies {
    Scorer scorer{};
    Budget budget{};
    Structure structure{};
    Reducer reducer{};
  };

  /// Bytes of one token slot of one layer: K and V for every head, plus its metadata.
  static constexpr index_t slot_bytes(const compressor_shape& s) {
    return s.num_kv_heads * (2 * s.head_dim * static_cast<index_t>(sizeof(T)) +
                             static_cast<index_t>(sizeof(token_meta)));
  }

  /// Most tokens one head of a layer whose budget is `tokens` holds between append and
  /// compress: tokens + max_chunk. A head-adaptive budget lets one head take the layer's whole
  /// total but the other heads' floors: heads · (tokens − floor) + floor + max_chunk (heads
  /// hold equal counts until something is evicted, at least the floor each afterwards).
  static index_t head_capacity(const compressor_shape& s, index_t tokens, const Budget& b) {
    const index_t capacity = checked_add("budget", tokens, s.max_chunk);
    if constexpr (!adaptive_heads) return capacity;
    else {
      validate_budget(b);
      const index_t floor = b.head_floor(tokens);  // ≤ tokens: the fraction is in [0, 1]
      return checked_add("budget", checked_mul("budget", s.num_kv_heads, tokens - floor), floor + s.max_chunk);
    }
  }
  /// Workspace bytes for layers of at most `max_capacity` = budget + max_chunk tokens whose
  /// heads hold at most `max_head_capacity` (head_capacity) each: the CUB-style size query,
  /// the same carve the constructor runs.
  static std::size_t workspace_bytes(const compressor_shape& s, index_t max_capacity, index_t max_head_capacity) {
    workspace_carver w;
    carve(w, s, max_capacity, max_head_capacity);
    detail::require(!w.overflowed(), "workspace bytes (shape, budget)", "a size that fits in std::size_t",
                    "more than fits");
    return w.bytes();
  }
  /// The same, for budgets whose heads all hold the same count (max_head_capacity = max_capacity).
  static std::size_t workspace_bytes(const compressor_shape& s, index_t max_capacity)
    requires(!adaptive_heads)
  {
    return workspace_bytes(s, max_capacity, max_capacity);
  }
  /// Bookkeeping a per-head layout adds to each layer's storage: head lengths and offsets.
  static constexpr std::size_t per_head_bookkeeping_bytes(const compressor_shape& s) {
    return per_head_lengths ? static_cast<std::size_t>(2 * s.num_kv_heads + 1) * sizeof(index_t) : 0;
  }

  /// Owning: storage and workspace come from `resource`.
  compressor(const compressor_shape& shape, const policies& p,
             std::pmr::memory_resource* resource = std::pmr::get_default_resource())
      : compressor(shape, p, resource, {}) {}

  /// Non-owning: each layer's K, V and metadata live in the engine's buffers, whose
  /// capacity must be at least that layer's budget + max_chunk. Only the workspace comes
  /// from `resource`.
  compressor(const compressor_shape& shape, const policies& p, std::span<const view_type> engine_layers,
             std::pmr::memory_resource* resource = std::pmr::get_default_resource())
      : compressor(shape, p, resource, engine_layers) {}

  compressor(const compressor&) = delete;
  compressor& operator=(const compressor&) = delete;
  ~compressor() { release(); }

  const compressor_shape& shape() const { return shape_; }
  const policies& policy() const { return policies_; }
  index_t num_layers() const { return shape_.num_layers; }
  index_t budget(index_t layer) const { return layers_[checked_layer(layer)].budget; }
  index_t capacity(index_t layer) const { return layers_[checked_layer(layer)].view.capacity(); }
  /// Resident tokens of `layer` (with per-head lengths: of its fullest head).
  index_t length(index_t layer) const { return layers_[checked_layer(layer)].view.length; }
  /// Resident tokens of one head of `layer`.
  index_t length(index_t layer, index_t head) const {
    detail::require(head >= 0 && head < shape_.num_kv_heads, "head", detail::lazy("in [0, ", shape_.num_kv_heads, ")"),
                    head);
    return head_length(layers_[checked_layer(layer)], head);
  }
  /// Logical tokens appended to `layer` so far: the index the next chunk continues from.
  index_t logical_length(index_t layer) const { return layers_[checked_layer(layer)].next_index; }
  /// The cache of `layer` as the engine attends over it.
  const view_type& layer(index_t layer) const { return layers_[checked_layer(layer)].view; }

  memory_stats memory() const {
    const auto head_slot = static_cast<std::size_t>(slot_bytes(shape_) / shape_.num_kv_heads);
    return {storage_bytes_, workspace_bytes_, resident_slots_ * head_slot, peak_resident_slots_ * head_slot};
  }

  /// Forget every layer's tokens (a new prompt). Keeps all storage.
  void reset() {
    for (auto& l : layers_) {
      l.view.length = 0, l.next_index = 0, l.last_t = 0, l.num_protected = 0;
      if constexpr (per_head_lengths)
        for (index_t head = 0; head <= shape_.num_kv_heads; ++head) {
          if (head < shape_.num_kv_heads) l.head_len[head] = 0;
          l.head_indptr[head] = head * l.view.mapping.capacity;
        }
    }
    resident_slots_ = 0;
  }

  /// Append a chunk's keys, values (any order, shape (tokens, kv_heads, head_dim)) and its
  /// tokens' metadata to `layer`. The chunk's tokens occupy slots [length, length + n) of
  /// every head.
  void append(index_t layer, kv_tensor<const T> k, kv_tensor<const T> v, std::span<const token_meta> meta) {
    auto& l = layers_[checked_layer(layer)];
    validate_chunk(shape_, policies_.structure, append_limits_of(l), k, v, meta);
    auto& view = l.view;
    const index_t n = k.num_tokens, d = shape_.head_dim;
    for (index_t head = 0; head < shape_.num_kv_heads; ++head) {
      const index_t at = head_length(l, head);
      for (index_t tok = 0; tok < n; ++tok) {
        std::memcpy(view.k + view.mapping(at + tok, head), k.data + k.offset(tok, head), d * sizeof(T));
        std::memcpy(view.v + view.mapping(at + tok, head), v.data + v.offset(tok, head), d * sizeof(T));
        view.meta_at(at + tok, head) = meta[tok];
      }
      if constexpr (per_head_lengths) l.head_len[head] += n;
    }
    for (const token_meta& m : meta) l.num_protected += m.is_protected;
    if (n > 0) l.next_index = meta.back().index + 1, l.last_t = meta.back().position.t;
    view.length += n;
    resident_slots_ += static_cast<std::size_t>(n * shape_.num_kv_heads);
    peak_resident_slots_ = std::max(peak_resident_slots_, resident_slots_);
  }

  /// Compress `layer` back to at most its budget. `window` (shape (w, q_heads, head_dim),
  /// w ≤ max_window) is an observation window of queries for query-aware scorers; with
  /// `window_is_chunk_tail` its queries are the last w tokens of the cache and attend
  /// causally, otherwise (a proxy such as the question) they see every resident token.
  void compress(index_t layer, kv_tensor<const T> window = {}, bool window_is_chunk_tail = true) {
    compress_to(layer, budget(layer), window, window_is_chunk_tail);
  }

  /// Compress `layer` to at most `tokens` (≤ its budget). With a budget that holds the
  /// whole prompt, one compress_to at the end is the offline oracle: post-prefill
  /// compression with the same policies.
  void compress_to(index_t layer, index_t tokens, kv_tensor<const T> window = {}, bool window_is_chunk_tail = true) {
    auto& l = layers_[checked_layer(layer)];
    detail::require(tokens >= l.num_protected && tokens <= l.budget, "tokens",
                    detail::lazy("in [protected resident = ", l.num_protected, ", budget = ", l.budget, "]"), tokens);
    validate_window(shape_, Scorer::inputs.window_mass, l.view.length, window, window_is_chunk_tail);
    const std::size_t before = resident_slots(l);
    if constexpr (adaptive_heads) {
      if (before <= static_cast<std::size_t>(tokens * shape_.num_kv_heads)) return;
      compress_heads_jointly(l, tokens, window, window_is_chunk_tail);
    } else {
      if (l.view.length <= tokens) return;
      for (index_t head = 0; head < shape_.num_kv_heads; ++head) {
        const index_t n = head_length(l, head), keep = std::min(n, tokens);
        if (n > keep) {
          score_head(l, head, window, window_is_chunk_tail, ws_.scores);
          select_head(l.view, head, n, keep, ws_.scores, ws_.order, ws_.keep);
          reduce_and_compact(l, head, ws_.keep);
        }
        if constexpr (per_head_lengths) l.head_len[head] = keep;
      }
      l.view.length = tokens;
    }
    if constexpr (per_head_lengths) repack_heads(l.view, l.head_indptr, l.head_len, shape_.max_chunk, ws_.repack_begin);
    resident_slots_ -= before - resident_slots(l);
    // The invariant every engine relies on; cannot fail unless kvcap itself is wrong.
    // Head-adaptive: the layer's total is bounded; otherwise every head (the fullest one is
    // view.length) holds at most the budget.
    const bool within = adaptive_heads ? resident_slots(l) <= static_cast<std::size_t>(l.budget * shape_.num_kv_heads)
                                       : l.view.length <= l.budget;
    if (!within) throw std::logic_error("kvcap: compress left more than the budget");
  }

 private:
  struct layer_state {
    view_type view{};
    index_t budget = 0;
    index_t next_index = 0;     // logical index the next token must exceed or equal
    std::int32_t last_t = 0;    // temporal position of the last appended token
    index_t num_protected = 0;  // protected tokens resident (the same in every head)
    bool owned = false;
    index_t* head_len = nullptr;     // (head), per-head lengths only
    index_t* head_indptr = nullptr;  // (head + 1), per-head lengths only: first slot of each head
  };

  index_t head_length(const layer_state& l, index_t head) const {
    if constexpr (per_head_lengths) return l.head_len[head];
    else return l.view.length;
  }
  std::size_t resident_slots(const layer_state& l) const {
    std::size_t slots = 0;
    for (index_t head = 0; head < shape_.num_kv_heads; ++head) slots += static_cast<std::size_t>(head_length(l, head));
    return slots;
  }
  static constexpr index_t num_components = num_components_v<Scorer>;

  struct workspace {
    float* scores = nullptr;          // (tok), or (head, tok) packed for head-adaptive budgets
    std::int32_t* order = nullptr;    // (tok), or (head, tok) packed
    std::uint8_t* keep = nullptr;     // (tok), or (head, tok) packed
    index_t* head_offset = nullptr;   // (head + 1), head-adaptive budgets only
    index_t* repack_begin = nullptr;  // (head), per-head lengths only
    float* mean_unit_key = nullptr;   // (dim)
    float* components = nullptr;      // (component, tok), composite scorers only
    window_mass_workspace window{};   // window scorers only
  };

  /// `max_capacity`: most tokens of a layer (budget + max_chunk); `max_head`: most tokens of
  /// one head (head_capacity), what a head's scores read (window mass, blend components).
  template <class Carver>
  static workspace carve(Carver& w, const compressor_shape& s, index_t max_capacity, index_t max_head) {
    workspace ws;
    const index_t select_heads = adaptive_heads ? s.num_kv_heads : 1;  // heads selected at once
    ws.scores = w.template take<float>(select_heads, max_capacity);
    ws.order = w.template take<std::int32_t>(select_heads, max_capacity);
    ws.keep = w.template take<std::uint8_t>(select_heads, max_capacity);
    if constexpr (adaptive_heads) ws.head_offset = w.template take<index_t>(s.num_kv_heads + 1);
    if constexpr (per_head_lengths) ws.repack_begin = w.template take<index_t>(s.num_kv_heads);
    ws.mean_unit_key = w.template take<float>(s.head_dim);
    if constexpr (num_components > 0)
      ws.components = w.template take<float>(num_components, max_head);
    if constexpr (Scorer::inputs.window_mass) {
      const index_t rows = checked_mul("workspace bytes (shape, budget)", s.max_window, s.num_q_heads / s.num_kv_heads);
      ws.window = window_mass_workspace::carve(w, rows, s.head_dim, max_head);
    }
    return ws;
  }

  cache_shape budget_shape() const {
    return {shape_.num_layers, shape_.num_kv_heads, shape_.head_dim, static_cast<index_t>(sizeof(T))};
  }

  /// Bytes of one owned layer of `capacity` tokens (K and V rounded up to whole pages when
  /// paged), in checked arithmetic.
  static index_t layer_storage_bytes(const compressor_shape& s, index_t capacity) {
    index_t slots = capacity;
    if constexpr (requires(typename Layout::mapping m) { m.page_size; }) {
      const index_t page = make_mapping<Layout>(capacity, s.num_kv_heads, s.head_dim).page_size;
      slots = checked_mul("budget", checked_add("budget", capacity, page - 1) / page, page);
    }
    const auto bytes = [&](index_t tokens, index_t per_head) {
      return checked_mul("budget", checked_mul("budget", tokens, s.num_kv_heads), per_head);
    };
    return checked_add("budget", bytes(slots, 2 * s.head_dim * static_cast<index_t>(sizeof(T))),
                       bytes(capacity, sizeof(token_meta)));
  }

  compressor(const compressor_shape& shape, const policies& p, std::pmr::memory_resource* resource,
             std::span<const view_type> engine_layers)
      : shape_(shape), policies_(p), resource_(resource) {
    // Every check first, so that a rejected construction allocates nothing.
    detail::require(resource != nullptr, "resource", "a memory resource", "nullptr");
    validate_shape(shape, Scorer::inputs.window_mass);
    // slot_bytes (and the bytes per token byte budgets divide by) must be addressable.
    checked_mul("shape.head_dim", shape.num_kv_heads,
                checked_add("shape.head_dim", checked_mul("shape.head_dim", shape.head_dim, 2 * sizeof(T)),
                            sizeof(token_meta)));
    validate_budget(p.budget);
    validate_structure(p.structure);
    const bool owning = engine_layers.empty();
    if (!owning) {
      detail::require(static_cast<index_t>(engine_layers.size()) == shape.num_layers, "engine_layers.size()",
                      shape.num_layers, engine_layers.size());
      if constexpr (per_head_lengths)
        detail::require(false, "engine_layers", "none: a per-head layout is repacked, use the owning constructor",
                        "engine buffers");
    }
    checked_mul("shape.num_layers", shape.num_layers, sizeof(layer_state));
    index_t max_capacity = 0, max_head = 0, storage = 0;  // storage: that the total is addressable
    for (index_t layer = 0; layer < shape.num_layers; ++layer) {
      const index_t b = p.budget.tokens_for(layer, budget_shape());
      detail::require(b > 0, "budget", detail::lazy("> 0 tokens for layer ", layer), b);
      const index_t capacity = checked_add("budget", b, shape.max_chunk);
      if (owning) storage = checked_add("budget", storage, layer_storage_bytes(shape, capacity));
      else validate_engine_layer(shape, engine_layers[layer], capacity);
      max_capacity = std::max(max_capacity, capacity);
      max_head = std::max(max_head, head_capacity(shape, b, p.budget));
    }
    workspace_bytes_ = workspace_bytes(shape, max_capacity, max_head);

    layers_.resize(static_cast<std::size_t>(shape.num_layers));
    try {
      for (index_t layer = 0; layer < shape.num_layers; ++layer) {
        auto& l = layers_[layer];
        l.budget = p.budget.tokens_for(layer, budget_shape());
        const index_t capacity = l.budget + shape.max_chunk;
        if (owning) {
          l.view.mapping = make_mapping<Layout>(capacity, shape.num_kv_heads, shape.head_dim);
          const auto elems = static_cast<std::size_t>(l.view.mapping.required_span_size());
          const auto metas = static_cast<std::size_t>(capacity * shape.num_kv_heads);
          l.owned = true;
          if constexpr (per_head_lengths) {
            l.head_len = static_cast<index_t*>(resource_->allocate(shape.num_kv_heads * sizeof(index_t), alignof(index_t)));
            l.head_indptr = static_cast<index_t*>(
                resource_->allocate((shape.num_kv_heads + 1) * sizeof(index_t), alignof(index_t)));
            storage_bytes_ += per_head_bookkeeping_bytes(shape);
            for (index_t head = 0; head <= shape.num_kv_heads; ++head) {
              if (head < shape.num_kv_heads) l.head_len[head] = 0;
              l.head_indptr[head] = head * capacity;
            }
            l.view.mapping.head_indptr = l.head_indptr;
            l.view.mapping.num_slots = capacity * shape.num_kv_heads;
            l.view.mapping.packed_meta = true;
            l.view.head_lengths = l.head_len;
          }
          l.view.k = static_cast<T*>(resource_->allocate(elems * sizeof(T), alignof(T)));
          l.view.v = static_cast<T*>(resource_->allocate(elems * sizeof(T), alignof(T)));
          l.view.meta = static_cast<token_meta*>(resource_->allocate(metas * sizeof(token_meta), alignof(token_meta)));
          storage_bytes_ += 2 * elems * sizeof(T) + metas * sizeof(token_meta);
        } else {
          l.view = engine_layers[layer];
          l.view.length = 0;
        }
      }
      workspace_memory_ = resource_->allocate(workspace_bytes_, workspace_alignment);
    } catch (...) {
      release();
      throw;
    }
    workspace_carver w(workspace_memory_);
    ws_ = carve(w, shape, max_capacity, max_head);
  }

  void release() noexcept {
    for (auto& l : layers_) {
      if (!l.owned) continue;
      const auto elems = static_cast<std::size_t>(l.view.mapping.required_span_size());
      const auto metas = static_cast<std::size_t>(l.view.mapping.capacity * shape_.num_kv_heads);
      if (l.view.k) resource_->deallocate(l.view.k, elems * sizeof(T), alignof(T));
      if (l.view.v) resource_->deallocate(l.view.v, elems * sizeof(T), alignof(T));
      if (l.view.meta) resource_->deallocate(l.view.meta, metas * sizeof(token_meta), alignof(token_meta));
      if (l.head_len) resource_->deallocate(l.head_len, shape_.num_kv_heads * sizeof(index_t), alignof(index_t));
      if (l.head_indptr)
        resource_->deallocate(l.head_indptr, (shape_.num_kv_heads + 1) * sizeof(index_t), alignof(index_t));
      l.view.k = l.view.v = nullptr;
      l.view.meta = nullptr;
      l.head_len = l.head_indptr = nullptr;
    }
    if (workspace_memory_) resource_->deallocate(workspace_memory_, workspace_bytes_, workspace_alignment);
    workspace_memory_ = nullptr;
  }

  index_t checked_layer(index_t layer) const {
    detail::require(layer >= 0 && layer < shape_.num_layers, "layer",
                    detail::lazy("in [0, ", shape_.num_layers, ")"), layer);
    return layer;
  }

  /// What the next chunk of `l` must fit into and continue (validation.hpp checks it).
  append_limits append_limits_of(const layer_state& l) const {
    // Against the declared capacity, not the view's: an engine's buffer may be larger, but
    // the workspace and the peak formula are sized for budget + max_chunk.
    index_t room = l.budget + shape_.max_chunk - l.view.length;
    if constexpr (per_head_lengths) {  // each head has its own room in the packed storage
      room = l.head_indptr[1] - l.head_indptr[0] - l.head_len[0];
      for (index_t head = 1; head < shape_.num_kv_heads; ++head)
        room = std::min(room, l.head_indptr[head + 1] - l.head_indptr[head] - l.head_len[head]);
    }
    return {l.budget, l.view.length, room, l.next_index, l.last_t, l.num_protected};
  }

  void compute_mean_unit_key(const view_type& view, index_t head) {
    const index_t n = view.length_of(head), d = shape_.head_dim;
    std::fill_n(ws_.mean_unit_key, d, 0.f);
    for (index_t tok = 0; tok < n; ++tok) {
      const auto k = view.key(tok, head);
      const float len = norm(k);
      if (unit_key_term::counts(len))
        for (index_t i = 0; i < d; ++i) ws_.mean_unit_key[i] += unit_key_term::of(k[i], len);
    }
    for (index_t i = 0; i < d; ++i) ws_.mean_unit_key[i] /= static_cast<float>(n);
  }

  /// Scores of every resident token of `head` into `scores` (tok).
  void score_head(const layer_state& l, index_t head, const kv_tensor<const T>& window, bool chunk_tail,
                  float* scores) {
    const view_type& view = l.view;
    const index_t n = head_length(l, head);
    if constexpr (Scorer::inputs.mean_unit_key) compute_mean_unit_key(view, head);
    if constexpr (Scorer::inputs.window_mass) window_mass(view, head, window, chunk_tail, ws_.window);
    const score_context<T, Layout, Structure> ctx{
        {&view, &policies_.structure, head, n}, l.next_index, ws_.mean_unit_key, ws_.window.mass};
    if constexpr (num_components == 0) {
      for (index_t tok = 0; tok < n; ++tok) scores[tok] = sanitize_score(policies_.scorer.score(ctx, tok));
    } else {
      // Composite: every component for every token, then z-scores per component.
      float mean[num_components], inv_std[num_components];
      for (index_t c = 0; c < num_components; ++c) {
        float* comp = ws_.components + c * n;
        component_sums sums;
        for (index_t tok = 0; tok < n; ++tok) sums.add(comp[tok] = policies_.scorer.component(ctx, tok, c));
        float stats[2];
        sums.finish(n, stats);
        mean[c] = stats[0], inv_std[c] = stats[1];
      }
      float z[num_components];
      for (index_t tok = 0; tok < n; ++tok) {
        for (index_t c = 0; c < num_components; ++c) z[c] = (ws_.components[c * n + tok] - mean[c]) * inv_std[c];
        scores[tok] = sanitize_score(policies_.scorer.combine(ctx, tok, z));
      }
    }
  }

  /// The reducer's turn (it may fold dropped tokens into kept ones), then the kept slots
  /// of `head` close up.
  void reduce_and_compact(const layer_state& l, index_t head, const std::uint8_t* keep_flags) {
    reduce_context<T, Layout, Structure> rctx{{&l.view, &policies_.structure, head, head_length(l, head)}, keep_flags};
    policies_.reducer.reduce(rctx);
    compact_head(l.view, head, head_length(l, head), keep_flags);
  }

  /// Head-adaptive budgets: the layer keeps `tokens` · kv_heads tokens in all. Each head
  /// first keeps its best min(resident, floor); the rest go to the best remaining tokens of
  /// any head, compared by rank and then by head (budgets/head_adaptive.hpp).
  void compress_heads_jointly(layer_state& l, index_t tokens, const kv_tensor<const T>& window, bool chunk_tail) {
    const index_t heads = shape_.num_kv_heads;
    index_t* off = ws_.head_offset;
    off[0] = 0;
    for (index_t head = 0; head < heads; ++head) off[head + 1] = off[head] + head_length(l, head);
    const index_t total = off[heads], budget_total = tokens * heads;
    const index_t floor = policies_.budget.head_floor(tokens);
    index_t kept = 0;
    for (index_t head = 0; head < heads; ++head) {
      const index_t n = off[head + 1] - off[head];
      score_head(l, head, window, chunk_tail, ws_.scores + off[head]);
      select_head(l.view, head, n, std::min(n, floor), ws_.scores + off[head], ws_.order + off[head],
                  ws_.keep + off[head]);
      kept += std::min(n, floor);
    }
    // The remaining budget to the best of what is left, across heads (flat index p = off[head] + tok).
    const auto head_of = [&](index_t p) { return static_cast<index_t>(std::upper_bound(off, off + heads + 1, p) - off) - 1; };
    const auto rank = [&](std::int32_t p) {
      const index_t head = head_of(p);
      const token_meta& m = l.view.meta_at(p - off[head], head);
      return rank_key{ws_.scores[p], m.index, m.is_protected};
    };
    index_t candidates = 0;
    for (index_t p = 0; p < total; ++p)
      if (!ws_.keep[p]) ws_.order[candidates++] = static_cast<std::int32_t>(p);
    const index_t extra = std::min(candidates, budget_total - kept);
    std::nth_element(ws_.order, ws_.order + extra, ws_.order + candidates, [&](std::int32_t a, std::int32_t b) {
      const rank_key ra = rank(a), rb = rank(b);
      return ranks_before(ra, rb) || (!ranks_before(rb, ra) && a < b);
    });
    for (index_t i = 0; i < extra; ++i) ws_.keep[ws_.order[i]] = 1;
    index_t longest = 0;
    for (index_t head = 0; head < heads; ++head) {
      const index_t n = off[head + 1] - off[head];
      reduce_and_compact(l, head, ws_.keep + off[head]);
      l.head_len[head] = static_cast<index_t>(std::count(ws_.keep + off[head], ws_.keep + off[head] + n, 1));
      longest = std::max(longest, l.head_len[head]);
    }
    l.view.length = longest;
  }

  compressor_shape shape_;
  policies policies_;
  std::pmr::memory_resource* resource_;
  std::vector<layer_state> layers_;  // sized at construction (after the checks), never resized
  void* workspace_memory_ = nullptr;
  workspace ws_{};
  std::size_t storage_bytes_ = 0, workspace_bytes_ = 0;
  std::size_t resident_slots_ = 0, peak_resident_slots_ = 0;  // (head, token) slots of all layers
};

}  // namespace kvcap::host
