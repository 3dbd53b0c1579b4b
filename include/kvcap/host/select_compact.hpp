#pragma once
// kvcap/host/select_compact.hpp — the steps of a host compress that need no policy and no
// compressor state: choose the tokens one head keeps, close the gaps the others leave, and
// repack the heads of a per-head variable-length layout (layouts::varlen).
//
// Each works in place on one layer view, with the scratch arrays it is handed (slices of
// the compressor's workspace): none allocates. They are the host counterparts of
// device/select.cuh and device/compact.cuh.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../core/layer_view.hpp"
#include "../core/ranking.hpp"

namespace kvcap::host {

/// keep_flags[tok] = 1 for the `keep` best of the head's `n` tokens (kvcap::ranks_before),
/// 0 for the rest. `order` is (n) scratch.
template <class T, layout Layout>
void select_head(const layer_view<T, Layout>& view, index_t head, index_t n, index_t keep, const float* scores,
                 std::int32_t* order, std::uint8_t* keep_flags) {
  for (index_t tok = 0; tok < n; ++tok) order[tok] = static_cast<std::int32_t>(tok);
  const auto rank = [&](std::int32_t tok) {
    const token_meta& m = view.meta_at(tok, head);
    return rank_key{scores[tok], m.index, m.is_protected};
  };
  std::nth_element(order, order + keep, order + n,
                   [&](std::int32_t a, std::int32_t b) { return ranks_before(rank(a), rank(b)); });
  std::fill_n(keep_flags, n, std::uint8_t{0});
  for (index_t i = 0; i < keep; ++i) keep_flags[order[i]] = 1;
}

/// Stable in-place compaction of the kept slots among the first `n` of `head`: K, V and
/// metadata. Kept slots move only toward the front, so no slot is overwritten before it is
/// read.
template <class T, layout Layout>
void compact_head(const layer_view<T, Layout>& view, index_t head, index_t n, const std::uint8_t* keep_flags) {
  const index_t d = view.mapping.head_dim;
  index_t dst = 0;
  for (index_t tok = 0; tok < n; ++tok) {
    if (!keep_flags[tok]) continue;
    if (dst != tok) {
      std::memcpy(view.k + view.mapping(dst, head), view.k + view.mapping(tok, head), d * sizeof(T));
      std::memcpy(view.v + view.mapping(dst, head), view.v + view.mapping(tok, head), d * sizeof(T));
      view.meta_at(dst, head) = view.meta_at(tok, head);
    }
    ++dst;
  }
}

/// Packs the heads of a per-head layout back to back, each followed by `max_chunk` free
/// slots (the last head gets what remains), so that every head can take the next chunk.
/// `head_indptr` (head + 1) is the storage the view's mapping reads, rewritten here;
/// `head_len` (head) holds each head's tokens; `new_begin` is (head) scratch. Heads moving
/// toward the front go first in ascending order, then heads moving back in descending
/// order: no head's tokens are overwritten before they are moved. Sets view.length to the
/// fullest head's length.
template <class T, layout Layout>
void repack_heads(layer_view<T, Layout>& view, index_t* head_indptr, const index_t* head_len, index_t max_chunk,
                  index_t* new_begin) {
  const index_t heads = view.mapping.num_heads, d = view.mapping.head_dim;
  index_t at = 0;
  for (index_t head = 0; head < heads; ++head) new_begin[head] = at, at += head_len[head] + max_chunk;
  const auto move = [&](index_t head) {
    const index_t from = head_indptr[head], to = new_begin[head], n = head_len[head];
    if (from == to || n == 0) return;
    std::memmove(view.k + to * d, view.k + from * d, n * d * sizeof(T));
    std::memmove(view.v + to * d, view.v + from * d, n * d * sizeof(T));
    std::memmove(view.meta + to, view.meta + from, n * sizeof(token_meta));
  };
  for (index_t head = 0; head < heads; ++head)
    if (new_begin[head] < head_indptr[head]) move(head);
  for (index_t head = heads - 1; head >= 0; --head)
    if (new_begin[head] > head_indptr[head]) move(head);
  for (index_t head = 0; head < heads; ++head) head_indptr[head] = new_begin[head];
  head_indptr[heads] = view.mapping.num_slots;
  view.length = *std::max_element(head_len, head_len + heads);
}

}  // namespace kvcap::host
