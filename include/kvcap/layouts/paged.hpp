#pragma once
// kvcap/layouts/paged.hpp — a paged cache as vLLM and FlashInfer keep it: a pool of pages
// and, per sequence, a block table from logical to physical page.
//
// Token `tok` of a sequence lives in logical page tok / page_size, which is physical page
// block_table[tok / page_size] of the pool, at row tok % page_size of that page. Inside a
// page the order is `PageOrder`:
//   nhd: page = (page_size, heads, dim)   vLLM's [num_blocks, block_size, kv_heads, head_size],
//                                         FlashInfer's kNHD
//   hnd: page = (heads, page_size, dim)   FlashInfer's kHND
// The block table (int32, as both engines keep it) and the pool are the engine's: kvcap never
// allocates or frees pages; it compacts a sequence's tokens toward its first slots in place,
// and releasing the trailing pages is the engine's job. Without a block table, logical page p
// is physical page p (what an owning executor allocates).
//
// The block table is read through the mapping, so it must live where the mapping is used:
// host memory for the host executor, device memory for the device executor.

#include <cstdint>

#include "../core/config.hpp"
#include "concept.hpp"
#include "kv_layout.hpp"

namespace kvcap::layouts {

template <kv_layout PageOrder>
struct paged {
  static constexpr kv_layout kind = PageOrder;
  /// Tokens of one head are contiguous only inside a page.
  static constexpr bool is_always_strided = false;

  struct mapping {
    index_t capacity = 0, num_heads = 0, head_dim = 0;
    index_t page_size = 16;                     ///< tokens per page (vLLM's block_size)
    const std::int32_t* block_table = nullptr;  ///< (ceil(capacity / page_size)); nullptr: identity
    index_t num_pages = 0;                      ///< pages in the pool; 0: ceil(capacity / page_size)

    KVCAP_HOST_DEVICE constexpr index_t page_elements() const { return page_size * num_heads * head_dim; }
    KVCAP_HOST_DEVICE constexpr index_t logical_pages() const { return (capacity + page_size - 1) / page_size; }
    /// Offset of element 0 of (tok, head); the dim elements follow contiguously.
    KVCAP_HOST_DEVICE constexpr index_t operator()(index_t tok, index_t head) const {
      const index_t logical = tok / page_size, row = tok - logical * page_size;
      const index_t page = block_table != nullptr ? static_cast<index_t>(block_table[logical]) : logical;
      const index_t in_page = PageOrder == kv_layout::nhd ? (row * num_heads + head) * head_dim
                                                          : (head * page_size + row) * head_dim;
      return page * page_elements() + in_page;
    }
    /// Distance between consecutive tokens of one head inside a page.
    KVCAP_HOST_DEVICE constexpr index_t token_stride() const {
      return PageOrder == kv_layout::nhd ? num_heads * head_dim : head_dim;
    }
    /// Elements of the pool the mapping may address.
    KVCAP_HOST_DEVICE constexpr index_t required_span_size() const {
      return (num_pages > 0 ? num_pages : logical_pages()) * page_elements();
    }
  };
};

/// vLLM's layout and FlashInfer's default (kNHD pages).
using paged_nhd = paged<kv_layout::nhd>;
/// FlashInfer's kHND pages.
using paged_hnd = paged<kv_layout::hnd>;

static_assert(layout<paged_nhd>);
static_assert(layout<paged_hnd>);

}  // namespace kvcap::layouts
