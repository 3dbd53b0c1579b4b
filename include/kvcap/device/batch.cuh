#pragma once
// kvcap/device/batch.cuh — what one device compress is given: a ragged batch of caches
// (compress_batch) and the policies to run over it (compress_policies).
//
// A batch is a set of views (one per (request, layer) cache, each with its own length,
// budget, pointers and, for paged layouts, block table) over the engine's device memory,
// with optional per-head lengths and budgets, observation windows, and the outputs the call
// writes. ragged_plan.cuh validates and plans it; compressor.cuh runs it.

#include <optional>
#include <span>

#include "../budgets/head_adaptive.hpp"
#include "../core/config.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../reducers/concept.hpp"
#include "../reducers/evict.hpp"
#include "../scorers/concept.hpp"
#include "../structures/sequence.hpp"
#include "status.cuh"

namespace kvcap::device {

/// How the heads of a view share its budget (compress_batch::share_heads): the host's
/// budgets::head_adaptive rule, with the view's budget as the layer's tokens per head.
struct head_sharing {
  double min_head_fraction = 0.25;  ///< each head keeps at least this share of the budget, in [0, 1]

  /// What every head of a view with budget `budget` keeps at least (or all it holds).
  KVCAP_HOST_DEVICE constexpr index_t floor(index_t budget) const {
    return budgets::head_adaptive{budget, min_head_fraction}.head_floor(budget);
  }
};

/// A ragged batch, described on the host; k, v, meta (and block tables, head indptrs) are
/// device memory. Inputs are read when the call is made; outputs are written by the call.
template <class T, layout Layout>
struct compress_batch {
  std::span<const layer_view<T, Layout>> views;  ///< (views) caches; `length` = resident tokens of every head
  std::span<const index_t> budgets;              ///< (views) tokens each head keeps; unused with head_budgets
  /// (views · kv_heads) optional per-head resident tokens. The device executor reads per-head
  /// lengths only from here (a view's own head_lengths pointer, if any, must then be null).
  std::span<const index_t> head_lengths = {};
  std::span<const index_t> head_budgets = {};    ///< (views · kv_heads) optional per-head budgets
  std::span<index_t> lengths_out = {};           ///< (views) optional: each view's longest head afterwards
  std::span<index_t> head_lengths_out = {};      ///< (views · kv_heads) optional: each head's tokens afterwards
  /// (views) the observation window of each view's compress, for window scorers
  /// (scorers::observation_window; read by no other scorer): queries of shape (w, q_heads,
  /// head_dim), q_heads a multiple of kv_heads (GQA), in device memory, as the host executor's
  /// `window` argument; {} for a view with nothing to drop.
  std::span<const kv_tensor<const T>> windows = {};
  /// The windows are the chunks' last w queries (causal: in a head of n slots query j sees
  /// slots ≤ n − w + j; w ≤ the view's longest head), or a proxy such as the question that
  /// sees every resident token (core/window_rows.hpp).
  bool window_is_chunk_tail = true;
  /// (views) optional: the tokens appended to every head of each view since it was last
  /// compressed (its chunk). The call checks the K and V of each head's last appended[view]
  /// slots for NaN and Inf, as the host executor's append checks a chunk; {}: every resident
  /// slot of every head. Every view is checked, whether or not it has tokens to drop.
  std::span<const index_t> appended = {};
  /// (device memory) optional: receives the call's device-side failure (its report) if the log
  /// holds none yet, so that an engine waits once for a run of calls (failure_log.cuh; read it
  /// with read_failure_log). Never cleared by kvcap. Host-side failures are the returned status.
  device_report* failure_log = nullptr;
  /// Optional: the heads of each view share its budget by score, as budgets::head_adaptive
  /// shares a layer's on the host (AdaKV-style). View v then keeps kv_heads · budgets[v]
  /// tokens in all: each head first its best min(resident, share_heads->floor(budgets[v])),
  /// the rest going to the best remaining tokens of any head, compared by ranks_before and
  /// then by the smaller head (shared_heads.cuh). A view holding no more than that keeps
  /// everything. Heads end with different lengths, which follow from the scores: the call
  /// writes them on the device, to head_lengths_device_out (pass them as head_lengths next
  /// time). Not with head_budgets, lengths_out or head_lengths_out. Any layout (a head's slots
  /// only close up), but one head may keep kv_heads · (budget − floor) + floor tokens, so the
  /// next chunk needs that much room plus the chunk in every head (the host executor's
  /// compressor::head_capacity), or a per-head layout the engine repacks between calls.
  std::optional<head_sharing> share_heads = std::nullopt;
  /// (device memory, views · kv_heads) with share_heads: each head's tokens afterwards (when
  /// read_status is ok).
  index_t* head_lengths_device_out = nullptr;
};

/// The policies a device compress runs: the scorer, the structure model its (and the
/// reducer's) neighbour queries go to, and what happens to dropped tokens.
template <any_scorer Scorer, structure Structure = structures::sequence, reducer Reducer = reducers::evict>
struct compress_policies {
  using scorer_type = Scorer;
  using structure_type = Structure;
  using reducer_type = Reducer;
  Scorer scorer{};
  Structure structure{};
  Reducer reducer{};
};

}  // namespace kvcap::device
