#pragma once
// kvcap/device/batch.cuh — what one device compress is given: a ragged batch of caches
// (compress_batch) and the policies to run over it (compress_policies).
//
// A batch is a set of views (one per (request, layer) cache, each with its own length,
// budget, pointers and, for paged layouts, block table) over the engine's device memory,
// with optional per-head lengths and budgets, observation windows, and the outputs the call
// writes. ragged_plan.cuh validates and plans it; compressor.cuh runs it.

#include <span>

#include "../core/config.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../reducers/concept.hpp"
#include "../reducers/evict.hpp"
#include "../scorers/concept.hpp"
#include "../structures/sequence.hpp"
#include "status.cuh"

namespace kvcap::device {

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
