#pragma once
// kvcap/device/reference.cuh — the device algorithm, stage for stage, on the CPU.
//
// Same plan, same workspace carve, same score contexts and rank keys, the same metadata
// checks, the same radix-select steps (and the same competition of heads that share a
// budget), the same reducer (its slot-order walk on one thread:
// the device's rounds for a local reducer end the same, reduce_rounds.cuh) and the same tiled
// compaction (each tile stages its moving rows, then writes them), run sequentially over host
// memory. It exists so that the algorithm itself (not its CUDA realisation) is tested on any machine against the host
// executor, and so that device results can be checked against it. Plain C++: any C++20
// compiler, no CUDA. (It stages rows in a std::vector: it is a test oracle, not a per-chunk
// path.)

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "ragged_plan.cuh"
#include "workspace_layout.cuh"
#include "reduce_context.cuh"
#include "score_context.cuh"

namespace kvcap::device::reference {

/// Fills the per-active-segment arrays of the plan (the device's plan kernel, sequentially).
template <class T, layout Layout>
void plan_segments(const workspace_layout<T, Layout>& ws, const plan_totals& p) {
  index_t active = 0, tokens = 0, tiles = 0, total = 0;
  for (index_t segment = 0; segment < p.num_segments; ++segment) {
    if (ws.share.on && segment % p.num_kv_heads == 0)  // the plan kernel's first pass, a view at a time
      total = ws.view_totals[segment / p.num_kv_heads] =
          view_tokens(ws.views, ws.head_lengths, p.num_kv_heads, segment / p.num_kv_heads);
    const extent e =
        segment_extent(ws.views, ws.budgets, ws.head_lengths, ws.head_budgets, p.num_kv_heads, segment, ws.share, total);
    if (!e.active()) continue;
    ws.segments[active] = {static_cast<std::int32_t>(segment / p.num_kv_heads),
                           static_cast<std::int32_t>(segment % p.num_kv_heads), e.length, e.keep};
    ws.token_indptr[active] = tokens;
    ws.tile_indptr[active] = tiles;
    tokens += e.length;
    tiles += (e.length + p.tile_tokens - 1) / p.tile_tokens;
    ++active;
  }
  ws.token_indptr[active] = tokens;
  ws.tile_indptr[active] = tiles;
}

/// The radix select of the `keep` largest of `n` keys (the device's select kernels,
/// sequentially): a segment's rank keys, or a view's shared keys.
template <class Key>
basic_selection<Key> select(const Key* keys, index_t n, index_t keep) {
  if (keep >= n) return basic_selection<Key>::all(n);
  if (keep <= 0) return basic_selection<Key>::none();
  basic_radix_state<Key> st;
  st.remaining = keep;
  while (!st.done) {
    index_t hist[radix_digits] = {};
    for (index_t i = 0; i < n; ++i)
      if (radix_candidate(st, keys[i])) ++hist[radix_digit(st, keys[i])];
    index_t above = 0;
    for (int digit = radix_digits - 1; digit >= 0; --digit) {
      if (radix_chosen(above, hist[digit], st.remaining)) {
        radix_advance(st, digit, above, hist[digit]);
        break;
      }
      above += hist[digit];
    }
  }
  return radix_result(st, keep);
}

/// The window mass of every slot of active segment `a` (the device's two window kernels,
/// sequentially: the same key tiles, the same per-tile softmax update, the same per-warp
/// partial sums, with exp from the C library and sequential warp sums).
template <class T, layout Layout>
void window_mass(const workspace_layout<T, Layout>& ws, const plan_totals& p, index_t a) {
  const plan_segment& seg = ws.segments[a];
  const layer_view<T, Layout>& view = ws.views[seg.view];
  const kv_tensor<const T>& win = ws.windows[seg.view];
  const index_t group = win.num_heads / p.num_kv_heads, rows = win.num_tokens * group, n = seg.length, dim = p.head_dim;
  const index_t block_rows = window_block_rows(dim), rows_per_warp = block_rows / window_warps;
  const float scale = window_scale(dim);
  const auto visible = [&](index_t row, index_t tok) {
    return tok < window_visible_end(n, win.num_tokens, group, row, p.window_causal);
  };
  const auto logit = [&](index_t row, index_t tok) {
    const auto q = window_query(win, seg.head, group, row);
    const auto k = view.key(tok, seg.head);
    float acc = 0.f;
    for (index_t c = 0; c < dim; ++c) acc += q[c] * scale * k[c];
    return acc;
  };
  float* stats = ws.window_stats + 2 * a * p.window_rows;
  for (index_t row = 0; row < rows; ++row) {
    float row_max = -HUGE_VALF, row_sum = 0.f;
    for (index_t t0 = 0; t0 < n; t0 += window_key_tile) {
      float l[window_key_tile], tile_max = -HUGE_VALF;
      for (index_t t = 0; t < window_key_tile; ++t) {
        l[t] = t0 + t < n && visible(row, t0 + t) ? logit(row, t0 + t) : -HUGE_VALF;
        tile_max = l[t] > tile_max ? l[t] : tile_max;
      }
      const float m = row_max > tile_max ? row_max : tile_max;
      if (m == -HUGE_VALF) continue;
      float tile_sum = 0.f;
      for (index_t t = 0; t < window_key_tile; ++t) tile_sum += std::exp(l[t] - m);
      row_sum = row_sum * std::exp(row_max - m) + tile_sum;
      row_max = m;
    }
    stats[2 * row] = row_max, stats[2 * row + 1] = row_sum;
  }
  float* mass = ws.window_mass + ws.token_indptr[a];
  for (index_t tok = 0; tok < n; ++tok) {
    float partial[window_warps] = {};
    for (index_t row = 0; row < rows; ++row)
      if (visible(row, tok))
        partial[(row % block_rows) / rows_per_warp] += std::exp(logit(row, tok) - stats[2 * row]) / stats[2 * row + 1];
    float sum = 0.f;
    for (const float x : partial) sum += x;
    mass[tok] = sum * (1.f / static_cast<float>(window_seeing_rows(n, win.num_tokens, group, p.window_causal)));
  }
}

/// NaN and Inf in the checked slots' K and V and, with `windows`, in the windows (the device's
/// finite_check.cuh, sequentially): the first failure in (segment, slot, K before V) order,
/// then in view order, is reported.
template <class T, layout Layout>
void check_finite(const workspace_layout<T, Layout>& ws, const plan_totals& p, bool windows) {
  const auto report = [&](finite_input input, index_t at, index_t received) {
    if (ws.report->code == 0)
      *ws.report = {static_cast<std::int32_t>(errc::not_finite), static_cast<std::int32_t>(input), at, 0, received};
  };
  const auto finite = [](const T& x) { return std::isfinite(static_cast<float>(x)); };
  for (index_t segment = 0; segment < p.num_segments; ++segment) {
    const index_t view = segment / p.num_kv_heads, head = segment % p.num_kv_heads;
    const layer_view<T, Layout>& v = ws.views[view];
    const index_t length = segment_length(ws.views, ws.head_lengths, p.num_kv_heads, segment);
    for (index_t slot = first_checked_slot(length, ws.appended, view); slot < length; ++slot)
      for (index_t d = 0; d < p.head_dim; ++d) {
        if (!finite(v.k[v.mapping(slot, head) + d])) report(finite_input::k, segment, slot);
        if (!finite(v.v[v.mapping(slot, head) + d])) report(finite_input::v, segment, slot);
      }
  }
  if (!windows) return;
  for (index_t view = 0; view < p.num_views; ++view) {
    const kv_tensor<const T>& w = ws.windows[view];
    for (index_t e = 0; e < w.size(); ++e)
      if (!finite(w.data[e])) report(finite_input::window, view, window_query_of(w, e));
  }
}

/// The compaction's tile table of active segment `a` for selection `sel` (the device's
/// write_tile_table, sequentially).
template <class T, layout Layout>
void tile_table(const workspace_layout<T, Layout>& ws, const plan_totals& p, index_t a, const selection& sel) {
  const index_t n = ws.segments[a].length, tiles = ws.tile_indptr[a + 1] - ws.tile_indptr[a];
  const std::uint64_t* keys = ws.keys + ws.token_indptr[a];
  index_t kept = 0;
  for (index_t tile = 0; tile < tiles; ++tile) {
    ws.tile_kept_before[ws.tile_indptr[a] + tile] = static_cast<std::int32_t>(kept);
    ws.tile_segment[ws.tile_indptr[a] + tile] = static_cast<std::int32_t>(a);
    const index_t begin = tile * p.tile_tokens, end = begin + p.tile_tokens < n ? begin + p.tile_tokens : n;
    for (index_t tok = begin; tok < end; ++tok) kept += sel.keeps(keys[tok]);
  }
}

/// The heads of each view compete for what their floors leave (the device's share_kernel,
/// sequentially): each active segment's decision into its rank keys and selection, every
/// head's length, and the tile tables.
template <class T, layout Layout>
void share_heads(const workspace_layout<T, Layout>& ws, const plan_totals& p) {
  index_t* const head_lengths_out = ws.shared_lengths;
  const index_t heads = p.num_kv_heads;
  index_t a0 = 0;
  for (index_t view = 0; view < p.num_views; ++view) {
    const index_t first = view * heads, total = view_tokens(ws.views, ws.head_lengths, heads, view);
    const auto extent_of = [&](index_t segment) {
      return segment_extent(ws.views, ws.budgets, ws.head_lengths, ws.head_budgets, heads, segment, ws.share, total);
    };
    for (index_t head = 0; head < heads; ++head)
      if (const extent e = extent_of(first + head); !e.active()) head_lengths_out[first + head] = e.length;
    index_t a1 = a0;
    while (a1 < p.active_segments && ws.segments[a1].view == view) ++a1;
    if (a0 == a1) continue;
    const index_t budget = ws.budgets[view], floor = ws.share.rule.floor(budget);
    index_t floors = 0;
    for (index_t head = 0; head < heads; ++head) floors += std::min(extent_of(first + head).length, floor);
    const index_t extra = heads * budget - floors, keep = (a1 - a0) * floor + extra;
    const index_t begin = ws.token_indptr[a0], n = ws.token_indptr[a1] - begin;
    const wide_key* keys = ws.shared_keys + begin;
    const basic_selection<wide_key> sel = select(keys, n, keep);
    index_t protected_rest = 0;
    for (index_t i = 0; i < n; ++i) protected_rest += !(keys[i] == floor_kept_key) && (keys[i].hi >> 63) != 0;
    if (protected_rest > extra && ws.report->code == 0)
      *ws.report = {static_cast<std::int32_t>(errc::budget_below_protected), 0, first, protected_rest, extra};
    for (index_t a = a0; a < a1; ++a) {
      index_t kept = 0;
      for (index_t i = ws.token_indptr[a]; i < ws.token_indptr[a + 1]; ++i) {
        const bool keeps = sel.keeps(ws.shared_keys[i]);
        ws.keys[i] = mark_kept(ws.keys[i], keeps);
        kept += keeps;
      }
      ws.selections[a] = marked_selection(kept);
      head_lengths_out[first + ws.segments[a].head] = kept;
      tile_table(ws, p, a, ws.selections[a]);
    }
    a0 = a1;
  }
}

/// Compacts tile `tile` of a segment: stages the rows of its kept slots that move, then
/// writes them to their destinations (the device's compact kernel, one tile).
template <class T, layout Layout>
void compact_tile(const layer_view<T, Layout>& view, const plan_segment& seg, const std::uint64_t* keys,
                  const selection& sel, index_t tile, index_t tile_tokens, index_t kept_before,
                  std::vector<std::byte>& staging) {
  const index_t begin = tile * tile_tokens, end = begin + tile_tokens < seg.length ? begin + tile_tokens : seg.length;
  const index_t row_bytes = view.mapping.head_dim * static_cast<index_t>(sizeof(T));
  const index_t stride = 2 * row_bytes + static_cast<index_t>(sizeof(token_meta));
  staging.resize(static_cast<std::size_t>(tile_tokens * stride));
  index_t dst = kept_before, moving = 0;
  index_t dsts[max_tile_tokens];
  for (index_t tok = begin; tok < end; ++tok) {
    if (!sel.keeps(keys[tok])) continue;
    if (dst != tok) {
      std::byte* row = staging.data() + moving * stride;
      std::memcpy(row, view.k + view.mapping(tok, seg.head), row_bytes);
      std::memcpy(row + row_bytes, view.v + view.mapping(tok, seg.head), row_bytes);
      std::memcpy(row + 2 * row_bytes, &view.meta_at(tok, seg.head), sizeof(token_meta));
      dsts[moving++] = dst;
    }
    ++dst;
  }
  for (index_t i = 0; i < moving; ++i) {
    const std::byte* row = staging.data() + i * stride;
    std::memcpy(view.k + view.mapping(dsts[i], seg.head), row, row_bytes);
    std::memcpy(view.v + view.mapping(dsts[i], seg.head), row + row_bytes, row_bytes);
    std::memcpy(&view.meta_at(dsts[i], seg.head), row + 2 * row_bytes, sizeof(token_meta));
  }
}

/// The device executor's `compress`, on host memory (views, block tables, head indptrs and
/// the failure log in host memory; `h_temp` a host buffer). Same two-phase convention: with h_temp ==
/// nullptr only `temp_bytes` is written. The device-side checks' errors are returned
/// directly (and also left in the workspace's report and, if the batch names one, in its
/// failure log, as on the device).
template <class T, layout Layout, any_scorer Scorer, structure Structure, reducer Reducer>
status compress(void* h_temp, std::size_t& temp_bytes, const compress_batch<T, Layout>& batch,
                const compress_policies<Scorer, Structure, Reducer>& policies) {
  constexpr policy_needs needs = needs_of<Scorer, Reducer>;
  constexpr index_t num_components = needs.num_components;
  plan_totals p;
  if (const status s = plan(batch, p, needs); !s) return s;
  std::size_t need = 0;
  if (const status s = workspace_bytes<T, Layout>(p, needs, need); !s) return s;
  if (h_temp == nullptr) {
    temp_bytes = need;
    return ok_status;
  }
  if (temp_bytes < need)
    return status::failure(errc::workspace_too_small, "temp_storage_bytes", -1, bytes_value(need),
                           bytes_value(temp_bytes));
  workspace_carver w(workspace_base(h_temp));
  const auto ws = carve<T, Layout>(w, p, needs);
  *ws.report = {};
  if (p.num_views == 0) return ok_status;
  std::memcpy(ws.views, batch.views.data(), batch.views.size_bytes());
  if (ws.budgets) std::memcpy(ws.budgets, batch.budgets.data(), batch.budgets.size_bytes());
  if (ws.head_lengths) std::memcpy(ws.head_lengths, batch.head_lengths.data(), batch.head_lengths.size_bytes());
  if (ws.head_budgets) std::memcpy(ws.head_budgets, batch.head_budgets.data(), batch.head_budgets.size_bytes());
  if (ws.appended) std::memcpy(ws.appended, batch.appended.data(), batch.appended.size_bytes());
  if (ws.windows) std::memcpy(ws.windows, batch.windows.data(), batch.windows.size_bytes());
  plan_segments(ws, p);
  check_finite(ws, p, needs.window_mass);

  // Score, check and select every active segment.
  for (index_t a = 0; a < p.active_segments; ++a) {
    const plan_segment& seg = ws.segments[a];
    [[maybe_unused]] const index_t segment = seg.view * p.num_kv_heads + seg.head;
    const index_t n = seg.length;
    const layer_view<T, Layout>& view = ws.views[seg.view];
    std::uint64_t* keys = ws.keys + ws.token_indptr[a];
    float* mean = needs.mean_unit_key ? ws.mean_keys + a * p.head_dim : nullptr;
    const float* mass = needs.window_mass ? ws.window_mass + ws.token_indptr[a] : nullptr;
    if constexpr (needs.window_mass) window_mass(ws, p, a);
    const segment_score_context<T, Layout, Structure> ctx{{&view, &policies.structure, seg.head, n}, mean, mass};
    for (index_t tok = 0; tok < n && ws.report->code == 0; ++tok) {
      if (tok > 0 && ctx.meta(tok).index <= ctx.meta(tok - 1).index)
        *ws.report = {static_cast<std::int32_t>(errc::meta_out_of_order), 0, segment, ctx.meta(tok - 1).index + 1,
                      ctx.meta(tok).index};
      else if (!policies.structure.check(ctx.meta(tok)).ok)
        *ws.report = {static_cast<std::int32_t>(errc::meta_out_of_structure), 0, segment, 0, tok};
    }
    if constexpr (needs.mean_unit_key) {
      float* norms = ws.norms + ws.token_indptr[a];
      for (index_t tok = 0; tok < n; ++tok) norms[tok] = key_norm_at(ctx, tok);
      for (index_t dim = 0; dim < p.head_dim; ++dim) mean[dim] = mean_unit_key_at(ctx, norms, dim);
    }
    float* comps = nullptr;
    float* stats = nullptr;
    if constexpr (num_components > 0) {
      comps = ws.components + num_components * ws.token_indptr[a];
      stats = ws.component_stats + 2 * num_components * a;
      for (index_t c = 0; c < num_components; ++c) {
        for (index_t tok = 0; tok < n; ++tok) comps[c * n + tok] = policies.scorer.component(ctx, tok, c);
        component_stats(comps + c * n, n, stats + 2 * c);
      }
    }
    index_t num_protected = 0;
    for (index_t tok = 0; tok < n; ++tok) {
      keys[tok] = rank_key_at(policies.scorer, ctx, tok, comps, stats);
      num_protected += static_cast<index_t>(keys[tok] >> 63);
    }
    ws.selections[a] = select(keys, n, seg.keep);
    if (p.share.on) {  // the head's floor, marked above every shared key; share_heads decides the rest
      for (index_t tok = 0; tok < n; ++tok)
        ws.shared_keys[ws.token_indptr[a] + tok] = ws.selections[a].keeps(keys[tok])
                                                       ? floor_kept_key
                                                       : encode_shared_rank(keys[tok], ctx.meta(tok).index, seg.head);
      continue;
    }
    if (num_protected > seg.keep && ws.report->code == 0)
      *ws.report = {static_cast<std::int32_t>(errc::budget_below_protected), 0, segment, num_protected, seg.keep};
    tile_table(ws, p, a, ws.selections[a]);
  }
  if (p.share.on) share_heads(ws, p);
  if (ws.report->code != 0) {
    if (batch.failure_log != nullptr && batch.failure_log->code == 0) *batch.failure_log = *ws.report;
    return to_status(*ws.report);
  }

  // The reducer's turn, then compaction tile by tile.
  std::vector<std::byte> staging;
  for (index_t a = 0; a < p.active_segments; ++a) {
    const plan_segment& seg = ws.segments[a];
    if constexpr (Reducer::merges) {
      segment_reduce_context<T, Layout, Structure> rctx{
          {ws.views + seg.view, &policies.structure, seg.head, seg.length}, ws.keys + ws.token_indptr[a],
          ws.selections[a]};
      policies.reducer.reduce(rctx);
    }
    const index_t tiles = ws.tile_indptr[a + 1] - ws.tile_indptr[a];
    for (index_t tile = 0; tile < tiles; ++tile)
      compact_tile(ws.views[seg.view], seg, ws.keys + ws.token_indptr[a], ws.selections[a], tile, p.tile_tokens,
                   ws.tile_kept_before[ws.tile_indptr[a] + tile], staging);
  }
  write_lengths(batch, p);
  if (p.share.on) std::memcpy(batch.head_lengths_device_out, ws.shared_lengths, p.num_segments * sizeof(index_t));
  return ok_status;
}

}  // namespace kvcap::device::reference
