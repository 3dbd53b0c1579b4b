#pragma once
// kvcap/layouts/concept.hpp — what a cache layout must offer.
//
// A layout is an empty tag with a nested `mapping` (the mdspan idea): the mapping holds the
// extents and maps (tok, head) to the offset of that slot's first dim element. The dim
// elements of one slot are contiguous, so a slot is always a `vector_ref`. Executors only
// ever address storage through the mapping, so they never branch on the layout.

#include <concepts>
#include <type_traits>

#include "../core/config.hpp"
#include "kv_layout.hpp"

namespace kvcap {

template <class L>
concept layout =
    std::is_empty_v<L> && std::same_as<std::remove_cvref_t<decltype(L::kind)>, kv_layout> &&
    std::is_trivially_copyable_v<typename L::mapping> &&
    requires(const typename L::mapping m, index_t tok, index_t head) {
      typename L::mapping;
      requires std::is_aggregate_v<typename L::mapping>;
      { m(tok, head) } -> std::same_as<index_t>;
      { m.token_stride() } -> std::same_as<index_t>;
      { m.required_span_size() } -> std::same_as<index_t>;
      { m.capacity } -> std::convertible_to<index_t>;
      { m.num_heads } -> std::convertible_to<index_t>;
      { m.head_dim } -> std::convertible_to<index_t>;
    };

/// The mapping of `L` for the given extents.
template <layout L>
constexpr typename L::mapping make_mapping(index_t capacity, index_t num_heads, index_t head_dim) {
  return typename L::mapping{capacity, num_heads, head_dim};
}

}  // namespace kvcap
