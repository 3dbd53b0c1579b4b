#pragma once
// kvcap/device/ragged_plan.cuh — the validation and the plan of a ragged batch
// (batch.cuh).
//
// Segments are (view, head) pairs, numbered view · num_kv_heads + head. A segment is active
// when it holds more tokens than its budget (when the heads of a view share its budget: more
// than its floor, in a view that holds more than kv_heads · budget); only active segments are
// scored, selected and compacted, laid end to end (FlashInfer's indptr convention):
//     token_indptr[a] .. token_indptr[a + 1]   the tokens of active segment a
//     tile_indptr[a]  .. tile_indptr[a + 1]    its compaction tiles (tile_tokens slots each)
//
// Planning runs twice with one body (FlashInfer's plan/run, CUB's two-phase size query): on
// the host to validate, size the workspace and size the grids, and on the device to write the
// per-segment arrays. Both call `segment_extent`. Plain C++: any C++20 compiler.

#include <cstdint>

#include "../core/config.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "batch.cuh"
#include "rank_bits.cuh"
#include "score_context.cuh"
#include "status.cuh"
#include "window_tiles.cuh"

namespace kvcap::device {

/// Resident and kept tokens of one segment.
struct extent {
  index_t length = 0, keep = 0;
  KVCAP_HOST_DEVICE constexpr bool active() const { return length > keep; }
  KVCAP_HOST_DEVICE constexpr index_t kept() const { return length < keep ? length : keep; }
};

/// One active segment of the plan.
struct plan_segment {
  std::int32_t view = 0, head = 0;
  index_t length = 0, keep = 0;
};

/// Whether, and how, the heads of each view share its budget (compress_batch::share_heads).
struct sharing_rule {
  bool on = false;
  head_sharing rule{};
};

/// Resident tokens of segment `segment`: its head's length, or its view's.
template <class T, layout Layout>
KVCAP_HOST_DEVICE constexpr index_t segment_length(const layer_view<T, Layout>* views, const index_t* head_lengths,
                                                   index_t num_kv_heads, index_t segment) {
  return head_lengths != nullptr ? head_lengths[segment] : views[segment / num_kv_heads].length;
}

/// Resident tokens of view `view`, its heads together: O(kv_heads). Its lengths must have been
/// validated (each in [0, capacity]), so that the sum, below kv_heads · capacity, cannot wrap.
template <class T, layout Layout>
KVCAP_HOST_DEVICE constexpr index_t view_tokens(const layer_view<T, Layout>* views, const index_t* head_lengths,
                                                index_t num_kv_heads, index_t view) {
  index_t total = 0;
  for (index_t s = view * num_kv_heads; s < (view + 1) * num_kv_heads; ++s)
    total += segment_length(views, head_lengths, num_kv_heads, s);
  return total;
}

/// Extent of segment `segment`: the one function host and device planning share. When the
/// heads of its view share the budget (`share.on`), `keep` is the head's floor, the tokens
/// its own selection keeps before the heads compete (shared_heads.cuh), and a view holding
/// no more than kv_heads · budget keeps everything (keep = length: not active). `view_total`
/// is the view's resident tokens (view_tokens), read only when the heads share the budget: a
/// loop over a view's heads finds it once, not once a head.
template <class T, layout Layout>
KVCAP_HOST_DEVICE constexpr extent segment_extent(const layer_view<T, Layout>* views, const index_t* budgets,
                                                  const index_t* head_lengths, const index_t* head_budgets,
                                                  index_t num_kv_heads, index_t segment, sharing_rule share,
                                                  index_t view_total) {
  const index_t view = segment / num_kv_heads, length = segment_length(views, head_lengths, num_kv_heads, segment);
  if (!share.on) return {length, head_budgets != nullptr ? head_budgets[segment] : budgets[view]};
  const index_t budget = budgets[view];
  if ((view_total + num_kv_heads - 1) / num_kv_heads <= budget) return {length, length};  // total <= kv_heads · budget
  return {length, share.rule.floor(budget)};
}

/// The same for a segment on its own: finds its view's total itself when the heads share the
/// budget (O(kv_heads) a call; O(1) when they do not).
template <class T, layout Layout>
KVCAP_HOST_DEVICE constexpr extent segment_extent(const layer_view<T, Layout>* views, const index_t* budgets,
                                                  const index_t* head_lengths, const index_t* head_budgets,
                                                  index_t num_kv_heads, index_t segment, sharing_rule share = {}) {
  const index_t total = share.on ? view_tokens(views, head_lengths, num_kv_heads, segment / num_kv_heads) : 0;
  return segment_extent(views, budgets, head_lengths, head_budgets, num_kv_heads, segment, share, total);
}

/// Shared memory a compaction block stages a tile in: K rows, V rows (each region rounded to
/// 16 bytes) and metadata.
constexpr index_t staging_bytes(index_t tile_tokens, index_t row_bytes) {
  return 2 * ((tile_tokens * row_bytes + 15) / 16 * 16) + tile_tokens * static_cast<index_t>(sizeof(token_meta));
}

/// Slots per compaction tile: the most (a power of two, 1..256) whose staging fits 40 KiB
/// (a block may use 48 KiB of shared memory without opting in; the rest is its bookkeeping).
constexpr index_t staging_bytes_limit = 40 * 1024;
constexpr index_t max_tile_tokens = 256;
/// The widest head whose one-slot staging (a K and a V row, and its metadata) fits the limit.
constexpr index_t max_head_dim_for(index_t element_bytes) {
  return (staging_bytes_limit - static_cast<index_t>(sizeof(token_meta))) / 2 / 16 * 16 / element_bytes;
}
/// `head_dim` in [1, max_head_dim_for(element_bytes)].
constexpr index_t tile_tokens_for(index_t head_dim, index_t element_bytes) {
  index_t t = max_tile_tokens;
  while (t > 1 && staging_bytes(t, head_dim * element_bytes) > staging_bytes_limit) t /= 2;
  return t;
}

/// Past this many segments or tokens no workspace fits in std::size_t (each takes 8 bytes or
/// more: a plan_segment, a rank key), so planning and bounds stop before their sums could wrap.
inline constexpr index_t max_plan_items = index_t{1} << 61;

/// What the host learns from planning: sizes of the workspace and of the grids.
struct plan_totals {
  index_t num_views = 0, num_kv_heads = 0, head_dim = 0;
  index_t num_segments = 0;     ///< views · kv_heads
  index_t active_segments = 0;  ///< segments with more tokens than their budget
  index_t tokens = 0;           ///< tokens of active segments
  index_t tiles = 0;            ///< compaction tiles of active segments
  index_t tile_tokens = 1;
  index_t max_length = 0;       ///< longest active segment
  index_t window_rows = 0;      ///< window scorers: most window queries × GQA group of a view
  bool window_causal = true;    ///< window scorers: the windows are the chunks' tails
  index_t checked_tokens = 0;   ///< slots whose K and V are checked for NaN and Inf, all segments
  index_t checked_max = 0;      ///< most checked slots of one segment
  index_t window_elements = 0;  ///< window scorers: most elements of one view's window
  bool head_lengths = false, head_budgets = false, appended = false;
  sharing_rule share{};         ///< the heads of each view share its budget (shared_heads.cuh)
};

/// The query (token) of element `e` of a window, in either order.
template <class T>
KVCAP_HOST_DEVICE constexpr index_t window_query_of(const kv_tensor<const T>& w, index_t e) {
  return w.order == kv_layout::nhd ? e / (w.num_heads * w.head_dim) : e / w.head_dim % w.num_tokens;
}

/// The first of a segment's `length` slots whose K and V a call checks for NaN and Inf
/// (compress_batch::appended; `appended` null: every slot).
KVCAP_HOST_DEVICE constexpr index_t first_checked_slot(index_t length, const index_t* appended, index_t view) {
  return appended != nullptr ? length - appended[view] : 0;
}

namespace detail {
template <class Mapping>
constexpr status check_mapping(const Mapping& m, index_t view) {
  if constexpr (requires { m.page_size; })
    if (m.page_size <= 0) return status::failure(errc::invalid_argument, "views[].mapping.page_size", view, 1, m.page_size);
  return ok_status;
}

/// The windows of a window scorer: one per view (empty: {} for a view with nothing to drop,
/// see plan), p.head_dim wide, the same query heads in every view (a multiple of kv_heads),
/// and head_dim small enough for one block's staging.
template <class T, layout Layout>
constexpr status check_windows(const compress_batch<T, Layout>& batch, plan_totals& p) {
  const auto num_views = static_cast<index_t>(batch.views.size());
  if (static_cast<index_t>(batch.windows.size()) != num_views)
    return status::failure(errc::invalid_argument, "windows.size() (a window scorer needs one window per view)", -1,
                           num_views, static_cast<index_t>(batch.windows.size()));
  index_t q_heads = 0;  // of the first non-empty window; every other must match it
  for (index_t view = 0; view < num_views; ++view) {
    const kv_tensor<const T>& w = batch.windows[view];
    if (w.data == nullptr && w.num_tokens == 0) continue;  // empty
    if (w.data == nullptr || w.num_tokens <= 0)
      return status::failure(errc::invalid_argument, "windows[].num_tokens (>= 1 query, at non-null data)", view, 1,
                             w.num_tokens);
    if (q_heads == 0) q_heads = w.num_heads;
    if (q_heads <= 0 || q_heads % p.num_kv_heads != 0)
      return status::failure(errc::shape_mismatch, "windows[].num_heads (a positive multiple of num_kv_heads)", view,
                             p.num_kv_heads, q_heads);
    if (w.num_heads != q_heads)
      return status::failure(errc::shape_mismatch, "windows[].num_heads", view, q_heads, w.num_heads);
    if (w.head_dim != p.head_dim)
      return status::failure(errc::shape_mismatch, "windows[].head_dim", view, p.head_dim, w.head_dim);
    if (q_heads > max_plan_items / p.head_dim)
      return status::failure(errc::capacity_exceeded, "windows[].num_heads (heads × head_dim)", view,
                             max_plan_items / p.head_dim, q_heads);
    if (w.num_tokens > max_plan_items / (q_heads * p.head_dim))
      return status::failure(errc::capacity_exceeded, "windows[].num_tokens (tokens × heads × head_dim)", view,
                             max_plan_items / (q_heads * p.head_dim), w.num_tokens);
    const index_t rows = w.num_tokens * (q_heads / p.num_kv_heads), elements = w.num_tokens * q_heads * p.head_dim;
    p.window_rows = rows > p.window_rows ? rows : p.window_rows;
    p.window_elements = elements > p.window_elements ? elements : p.window_elements;
  }
  if (window_block_rows(p.head_dim) == 0)
    return status::failure(errc::invalid_argument, "views[].mapping.head_dim (window scorers)", 0, window_max_head_dim,
                           p.head_dim);
  return ok_status;
}
}  // namespace detail

/// Validates `batch` (the checks the host executor makes on its views, budgets and windows)
/// and computes its totals, for a scorer that `needs` these shared inputs. Nothing is read
/// from device memory.
template <class T, layout Layout>
constexpr status plan(const compress_batch<T, Layout>& batch, plan_totals& p, policy_needs needs = {}) {
  p = {};
  const auto num_views = static_cast<index_t>(batch.views.size());
  p.num_views = num_views;
  p.window_causal = batch.window_is_chunk_tail;
  p.head_lengths = !batch.head_lengths.empty();
  p.head_budgets = !batch.head_budgets.empty();
  p.appended = !batch.appended.empty();
  if (batch.share_heads) p.share = {true, *batch.share_heads};
  if (p.share.on) {
    const double f = p.share.rule.min_head_fraction;
    if (!(f >= 0 && f <= 1))  // NaN too
      return status::failure(errc::invalid_argument, "share_heads->min_head_fraction (a fraction in [0, 1])", -1, 1, -1);
    if (p.head_budgets)
      return status::failure(errc::invalid_argument, "head_budgets (none when heads share budgets: share_heads)", -1, 0,
                             static_cast<index_t>(batch.head_budgets.size()));
    if (!batch.lengths_out.empty() || !batch.head_lengths_out.empty())
      return status::failure(errc::invalid_argument,
                             "lengths_out, head_lengths_out (none with share_heads: head_lengths_device_out)", -1, 0,
                             static_cast<index_t>(batch.lengths_out.size() + batch.head_lengths_out.size()));
    if (num_views > 0 && batch.head_lengths_device_out == nullptr)
      return status::failure(errc::invalid_argument, "head_lengths_device_out (device memory, with share_heads)", -1, 1,
                             0);
  }
  if (num_views == 0) return ok_status;
  const auto& first = batch.views[0].mapping;
  p.num_kv_heads = first.num_heads;
  p.head_dim = first.head_dim;
  if (p.num_kv_heads <= 0) return status::failure(errc::invalid_argument, "views[].mapping.num_heads", 0, 1, p.num_kv_heads);
  if (p.share.on && p.num_kv_heads >= max_segment_slots)  // the shared keys tell heads apart in 31 bits
    return status::failure(errc::capacity_exceeded, "views[].mapping.num_heads (share_heads)", 0,
                           max_segment_slots - 1, p.num_kv_heads);
  if (p.head_dim <= 0) return status::failure(errc::invalid_argument, "views[].mapping.head_dim", 0, 1, p.head_dim);
  if (const index_t widest = max_head_dim_for(static_cast<index_t>(sizeof(T))); p.head_dim > widest)
    return status::failure(errc::invalid_argument, "views[].mapping.head_dim (a K and a V row fit 40 KiB)", 0, widest,
                           p.head_dim);
  if (p.num_kv_heads > max_plan_items / num_views)
    return status::failure(errc::capacity_exceeded, "views[].mapping.num_heads (views × heads)", 0,
                           max_plan_items / num_views, p.num_kv_heads);
  p.num_segments = num_views * p.num_kv_heads;
  p.tile_tokens = tile_tokens_for(p.head_dim, static_cast<index_t>(sizeof(T)));

  const auto sized = [](auto span, index_t n) { return span.empty() || static_cast<index_t>(span.size()) == n; };
  if (!p.head_budgets && static_cast<index_t>(batch.budgets.size()) != num_views)
    return status::failure(errc::invalid_argument, "budgets.size()", -1, num_views, static_cast<index_t>(batch.budgets.size()));
  if (!sized(batch.head_budgets, p.num_segments))
    return status::failure(errc::invalid_argument, "head_budgets.size()", -1, p.num_segments,
                           static_cast<index_t>(batch.head_budgets.size()));
  if (!sized(batch.head_lengths, p.num_segments))
    return status::failure(errc::invalid_argument, "head_lengths.size()", -1, p.num_segments,
                           static_cast<index_t>(batch.head_lengths.size()));
  if (!sized(batch.lengths_out, num_views))
    return status::failure(errc::invalid_argument, "lengths_out.size()", -1, num_views,
                           static_cast<index_t>(batch.lengths_out.size()));
  if (!sized(batch.appended, num_views))
    return status::failure(errc::invalid_argument, "appended.size()", -1, num_views,
                           static_cast<index_t>(batch.appended.size()));
  if (!sized(batch.head_lengths_out, p.num_segments))
    return status::failure(errc::invalid_argument, "head_lengths_out.size()", -1, p.num_segments,
                           static_cast<index_t>(batch.head_lengths_out.size()));

  if (needs.window_mass) {
    if (const status s = detail::check_windows(batch, p); !s) return s;
  }
  for (index_t view = 0; view < num_views; ++view) {
    const auto& v = batch.views[view];
    if (v.k == nullptr || v.v == nullptr || v.meta == nullptr)
      return status::failure(errc::invalid_argument, "views[].k, v, meta (non-null)", view, 1, 0);
    if (v.mapping.num_heads != p.num_kv_heads)
      return status::failure(errc::shape_mismatch, "views[].mapping.num_heads", view, p.num_kv_heads, v.mapping.num_heads);
    if (v.mapping.head_dim != p.head_dim)
      return status::failure(errc::shape_mismatch, "views[].mapping.head_dim", view, p.head_dim, v.mapping.head_dim);
    if (v.mapping.capacity < 0 || v.mapping.capacity >= max_segment_slots)
      return status::failure(errc::capacity_exceeded, "views[].mapping.capacity", view, max_segment_slots - 1,
                             v.mapping.capacity);
    if (const status s = detail::check_mapping(v.mapping, view); !s) return s;
    if constexpr (requires { v.head_lengths; })  // a view's own per-head lengths are not read here
      if (v.head_lengths != nullptr && !p.head_lengths)
        return status::failure(errc::invalid_argument, "views[].head_lengths (pass them as batch.head_lengths)", view,
                               0, 1);
    if (!p.head_lengths && (v.length < 0 || v.length > v.mapping.capacity))
      return status::failure(errc::capacity_exceeded, "views[].length", view, v.mapping.capacity, v.length);
    if (!p.head_budgets && batch.budgets[view] < 0)
      return status::failure(errc::invalid_argument, "budgets[]", view, 0, batch.budgets[view]);
    if (p.appended && batch.appended[view] < 0)
      return status::failure(errc::invalid_argument, "appended[]", view, 0, batch.appended[view]);
  }
  const index_t* head_lengths = p.head_lengths ? batch.head_lengths.data() : nullptr;
  const index_t* head_budgets = p.head_budgets ? batch.head_budgets.data() : nullptr;
  const index_t* budgets = p.head_budgets ? nullptr : batch.budgets.data();
  index_t resident = 0, total = 0;  // the current view's longest head, and its heads' tokens
  for (index_t segment = 0; segment < p.num_segments; ++segment) {
    if (segment % p.num_kv_heads == 0) {  // a view's first head: its heads' lengths, checked before they are added
      const index_t capacity = batch.views[segment / p.num_kv_heads].mapping.capacity;
      resident = total = 0;
      for (index_t s = segment; s < segment + p.num_kv_heads; ++s) {
        const index_t n = segment_length(batch.views.data(), head_lengths, p.num_kv_heads, s);
        if (p.head_lengths && (n < 0 || n > capacity))
          return status::failure(errc::capacity_exceeded, "head_lengths[]", s, capacity, n);
        resident = n > resident ? n : resident;
        total += n;
      }
    }
    const extent e = segment_extent(batch.views.data(), budgets, head_lengths, head_budgets, p.num_kv_heads, segment,
                                    p.share, total);
    if (p.head_budgets && e.keep < 0) return status::failure(errc::invalid_argument, "head_budgets[]", segment, 0, e.keep);
    if (p.appended && batch.appended[segment / p.num_kv_heads] > e.length)
      return status::failure(errc::capacity_exceeded, "appended[] (<= every head's resident tokens)",
                             segment / p.num_kv_heads, e.length, batch.appended[segment / p.num_kv_heads]);
    const index_t checked =
        e.length - first_checked_slot(e.length, p.appended ? batch.appended.data() : nullptr, segment / p.num_kv_heads);
    p.checked_tokens += checked;
    p.checked_max = checked > p.checked_max ? checked : p.checked_max;
    if (!e.active()) continue;
    ++p.active_segments;
    p.tokens += e.length;
    p.tiles += (e.length + p.tile_tokens - 1) / p.tile_tokens;
    p.max_length = e.length > p.max_length ? e.length : p.max_length;
    if (needs.window_mass) {
      const index_t view = segment / p.num_kv_heads, w = batch.windows[view].num_tokens;
      if (e.length > window_max_length)
        return status::failure(errc::capacity_exceeded, "views[].length (window scorers)", view, window_max_length,
                               e.length);
      if (w == 0)
        return status::failure(errc::invalid_argument, "windows[] (a window for a view with tokens to drop)", view, 1, 0);
      // The chunk's tail lies within the view's resident tokens, its longest head; a shorter
      // head has queries before its first slot, which see none of its keys (window_rows.hpp).
      if (batch.window_is_chunk_tail && w > resident)
        return status::failure(errc::shape_mismatch, "windows[].num_tokens (<= resident tokens: the chunk's tail)",
                               view, resident, w);
    }
  }
  return ok_status;
}

/// Writes the lengths a successful call leaves (the outputs of `batch`), from the inputs.
/// With share_heads they follow from the scores: the device writes them (shared_heads.cuh).
template <class T, layout Layout>
constexpr void write_lengths(const compress_batch<T, Layout>& batch, const plan_totals& p) {
  if (p.share.on) return;
  const index_t* head_lengths = p.head_lengths ? batch.head_lengths.data() : nullptr;
  const index_t* head_budgets = p.head_budgets ? batch.head_budgets.data() : nullptr;
  const index_t* budgets = p.head_budgets ? nullptr : batch.budgets.data();
  for (index_t view = 0; view < p.num_views; ++view) {
    index_t longest = 0;
    for (index_t head = 0; head < p.num_kv_heads; ++head) {
      const index_t segment = view * p.num_kv_heads + head;
      const index_t kept = segment_extent(batch.views.data(), budgets, head_lengths, head_budgets, p.num_kv_heads, segment).kept();
      if (!batch.head_lengths_out.empty()) batch.head_lengths_out[segment] = kept;
      longest = kept > longest ? kept : longest;
    }
    if (!batch.lengths_out.empty()) batch.lengths_out[view] = longest;
  }
}

}  // namespace kvcap::device
