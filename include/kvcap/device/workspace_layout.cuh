#pragma once
// kvcap/device/workspace_layout.cuh — one call's workspace: the sub-buffers it is carved
// into, its size (for a planned batch, or a bound for every batch within declared limits),
// and where the carve starts in the caller's buffer.
//
// CUB's two-phase convention: the same carve runs over a null buffer for the size query and
// over the caller's buffer for the call (core/workspace.hpp), so the two cannot disagree.

#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../core/workspace.hpp"
#include "ragged_plan.cuh"
#include "rank_bits.cuh"
#include "score_context.cuh"
#include "status.cuh"

namespace kvcap::device {

/// Declared limits, for a workspace that serves every later call (allocate once, at start-up).
struct workspace_limits {
  index_t max_views = 1;     ///< most views in one call
  index_t num_kv_heads = 1;
  index_t head_dim = 0;
  index_t max_capacity = 0;  ///< most resident tokens of one head in any call (budget + max chunk)
  index_t max_window_rows = 0;  ///< window scorers: most window queries × GQA group of a view
  bool share_heads = false;     ///< calls may share budgets across heads (compress_batch::share_heads)
};

/// A dropped token of a segment and its nearest kept slots (-1 and the segment's length:
/// none), as a local reducer's rounds list them (reduce_rounds.cuh).
struct dropped_token {
  std::int32_t slot = 0, before = -1, after = 0;
  std::int32_t done = 0;  ///< its turn has been taken
};

/// The sub-buffers of one call's workspace (device memory for the device executor, host
/// memory for the reference). Carved in one sequence for the size query and the real run.
template <class T, layout Layout>
struct workspace_layout {
  device_report* report = nullptr;           // first, at offset 0: see read_status
  layer_view<T, Layout>* views = nullptr;    // (views) copy of the batch's views
  index_t* budgets = nullptr;                // (views) copy, or nullptr with head_budgets
  index_t* head_lengths = nullptr;           // (segments) copy, or nullptr
  index_t* head_budgets = nullptr;           // (segments) copy, or nullptr
  index_t* appended = nullptr;               // (views) copy, or nullptr: every slot is checked
  plan_segment* segments = nullptr;          // (active)
  index_t* token_indptr = nullptr;           // (active + 1)
  index_t* tile_indptr = nullptr;            // (active + 1)
  std::uint64_t* keys = nullptr;             // (tokens) rank keys, see rank_bits.cuh
  float* norms = nullptr;                    // (tokens) |k|, when the scorer needs the mean unit key
  float* mean_keys = nullptr;                // (active, dim), idem
  float* components = nullptr;               // per active segment (component, tok), composite scorers
  float* component_stats = nullptr;          // (active, component, 2) mean and 1/std, idem
  selection* selections = nullptr;           // (active)
  std::int32_t* tile_kept_before = nullptr;  // (tiles) kept slots of the segment before the tile
  std::int32_t* tile_segment = nullptr;      // (tiles) the active segment a tile belongs to
  std::int32_t* tile_done = nullptr;         // (tiles + 1) tile has read its rows; [tiles] = tile counter
  kv_tensor<const T>* windows = nullptr;     // (views) copy of the batch's windows, window scorers
  float* window_stats = nullptr;             // (active, window rows, 2) softmax max and normaliser, idem
  float* window_mass = nullptr;              // (tokens) attention mass of the window, idem
  dropped_token* dropped = nullptr;          // (tokens) a segment's dropped tokens in slot order, local reducers
  std::int32_t* claims = nullptr;            // (tokens) per slot: the first dropped token claiming it, idem
  wide_key* shared_keys = nullptr;           // (tokens) with share: the keys heads compete by (shared_heads.cuh)
  index_t* shared_lengths = nullptr;         // (segments) with share: each head's length afterwards, idem
  index_t* view_totals = nullptr;            // (views) with share: each view's resident tokens (the plan's)
  sharing_rule share{};                      // the plan's (a value, not carved)
};

template <class T, layout Layout, class Carver>
constexpr workspace_layout<T, Layout> carve(Carver& w, const plan_totals& p, policy_needs needs) {
  workspace_layout<T, Layout> ws;
  ws.report = w.template take<device_report>(1);
  ws.views = w.template take<layer_view<T, Layout>>(p.num_views);
  ws.budgets = p.head_budgets ? nullptr : w.template take<index_t>(p.num_views);
  ws.head_lengths = p.head_lengths ? w.template take<index_t>(p.num_segments) : nullptr;
  ws.head_budgets = p.head_budgets ? w.template take<index_t>(p.num_segments) : nullptr;
  ws.appended = p.appended ? w.template take<index_t>(p.num_views) : nullptr;
  ws.segments = w.template take<plan_segment>(p.active_segments);
  ws.token_indptr = w.template take<index_t>(p.active_segments + 1);
  ws.tile_indptr = w.template take<index_t>(p.active_segments + 1);
  ws.keys = w.template take<std::uint64_t>(p.tokens);
  ws.norms = needs.mean_unit_key ? w.template take<float>(p.tokens) : nullptr;
  ws.mean_keys = needs.mean_unit_key ? w.template take<float>(p.active_segments, p.head_dim) : nullptr;
  ws.components = needs.num_components > 0 ? w.template take<float>(needs.num_components, p.tokens) : nullptr;
  ws.component_stats =
      needs.num_components > 0 ? w.template take<float>(2, needs.num_components, p.active_segments) : nullptr;
  ws.selections = w.template take<selection>(p.active_segments);
  ws.tile_kept_before = w.template take<std::int32_t>(p.tiles);
  ws.tile_segment = w.template take<std::int32_t>(p.tiles);
  ws.tile_done = w.template take<std::int32_t>(p.tiles + 1);
  if (needs.window_mass) {
    ws.windows = w.template take<kv_tensor<const T>>(p.num_views);
    ws.window_stats = w.template take<float>(2, p.active_segments, p.window_rows);
    ws.window_mass = w.template take<float>(p.tokens);
  }
  if (needs.dropped_lists) {
    ws.dropped = w.template take<dropped_token>(p.tokens);
    ws.claims = w.template take<std::int32_t>(p.tokens);
  }
  if (p.share.on) {
    ws.shared_keys = w.template take<wide_key>(p.tokens);
    ws.shared_lengths = w.template take<index_t>(p.num_segments);
    ws.view_totals = w.template take<index_t>(p.num_views);
  }
  ws.share = p.share;
  return ws;
}

/// Bytes of a call's workspace into `bytes`: the carve, plus room to start it at the first
/// 256-byte boundary of any buffer (CUB's convention: a caller's base need not be aligned).
/// capacity_exceeded, naming the workspace, when that size does not fit in std::size_t;
/// `bytes` is then left as it was.
template <class T, layout Layout>
constexpr status workspace_bytes(const plan_totals& p, policy_needs needs, std::size_t& bytes) {
  workspace_carver w;
  carve<T, Layout>(w, p, needs);
  if (w.overflowed())
    return status::failure(errc::capacity_exceeded, "workspace bytes (fit in std::size_t)", -1, 1, 0);
  bytes = w.bytes() + (workspace_alignment - 1);  // a carve ends at 2^64 − 256 at most: this fits
  return ok_status;
}

/// Where a call's carve starts in the caller's buffer (its report first: read_status): the
/// buffer's pointer moved forward to the alignment, as std::align does (no integer cast back
/// to a pointer, so the result keeps the buffer's provenance).
inline void* workspace_base(void* buffer) {
  const auto past = reinterpret_cast<std::uintptr_t>(buffer) % workspace_alignment;
  return static_cast<std::byte*>(buffer) + (past == 0 ? 0 : workspace_alignment - past);
}
inline const void* workspace_base(const void* buffer) { return workspace_base(const_cast<void*>(buffer)); }

/// Workspace bytes into `bytes` that serve every call within `limits` (with or without
/// per-head spans), for these policies (a local reducer such as merge needs lists of its
/// own). A limit out of range, or a bound past std::size_t, is refused by name, with
/// `bytes` left as it was.
template <class T, layout Layout, any_scorer Scorer, reducer Reducer = reducers::evict>
constexpr status workspace_bound(const workspace_limits& limits, std::size_t& bytes) {
  if (limits.max_views < 0) return status::failure(errc::invalid_argument, "limits.max_views", -1, 0, limits.max_views);
  if (limits.num_kv_heads < 1)
    return status::failure(errc::invalid_argument, "limits.num_kv_heads", -1, 1, limits.num_kv_heads);
  if (const index_t widest = max_head_dim_for(static_cast<index_t>(sizeof(T)));
      limits.head_dim < 1 || limits.head_dim > widest)
    return status::failure(errc::invalid_argument, "limits.head_dim (in [1, widest])", -1, widest, limits.head_dim);
  if (limits.max_capacity < 0 || limits.max_capacity >= max_segment_slots)
    return status::failure(errc::capacity_exceeded, "limits.max_capacity", -1, max_segment_slots - 1,
                           limits.max_capacity);
  if (limits.max_window_rows < 0)
    return status::failure(errc::invalid_argument, "limits.max_window_rows", -1, 0, limits.max_window_rows);
  constexpr index_t most = max_plan_items;
  if (limits.max_views > most / limits.num_kv_heads)
    return status::failure(errc::capacity_exceeded, "limits.max_views (views × kv heads)", -1,
                           most / limits.num_kv_heads, limits.max_views);
  const index_t segments = limits.max_views * limits.num_kv_heads;
  if (limits.max_capacity > 0 && segments > most / limits.max_capacity)
    return status::failure(errc::capacity_exceeded, "limits.max_capacity (views × kv heads × capacity)", -1,
                           most / segments, limits.max_capacity);
  plan_totals p;
  p.num_views = limits.max_views;
  p.num_kv_heads = limits.num_kv_heads;
  p.head_dim = limits.head_dim;
  p.num_segments = p.active_segments = segments;
  p.tokens = segments * limits.max_capacity;
  p.tile_tokens = tile_tokens_for(limits.head_dim, static_cast<index_t>(sizeof(T)));
  p.tiles = segments * ((limits.max_capacity + p.tile_tokens - 1) / p.tile_tokens);
  p.max_length = limits.max_capacity;
  p.window_rows = limits.max_window_rows;
  p.share.on = limits.share_heads;
  p.head_lengths = p.head_budgets = true;
  std::size_t per_head = 0, per_view = 0;
  if (const status s = workspace_bytes<T, Layout>(p, needs_of<Scorer, Reducer>, per_head); !s) return s;
  p.head_budgets = false;  // then `budgets` is carved instead: take the larger
  if (const status s = workspace_bytes<T, Layout>(p, needs_of<Scorer, Reducer>, per_view); !s) return s;
  bytes = per_head > per_view ? per_head : per_view;
  return ok_status;
}

}  // namespace kvcap::device
