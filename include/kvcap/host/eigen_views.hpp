#pragma once
// kvcap/host/eigen_views.hpp — a head of a cache or tensor as an Eigen matrix, no copy.
//
// Rows are tokens, columns are dims; the outer stride is the layout's token stride
// (num_heads · head_dim for NHD, head_dim for HND), as Eigen::Map with OuterStride<>.

#include <Eigen/Core>

#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"

namespace kvcap::host {

template <class T>
using row_matrix = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
using head_map = Eigen::Map<std::conditional_t<std::is_const_v<T>, const row_matrix<T>, row_matrix<T>>,
                            Eigen::Unaligned, Eigen::OuterStride<>>;

/// Keys (or values, with `values = true`) of `head`, slots [0, length): (tok, dim).
template <class T, layout Layout>
head_map<const T> head_rows(const layer_view<T, Layout>& view, index_t head, bool values = false) {
  if constexpr (requires { Layout::is_always_strided; })
    static_assert(Layout::is_always_strided, "a head of a paged cache is not one strided matrix: gather it");
  const T* base = (values ? view.v : view.k) + view.mapping(0, head);
  return {base, view.length_of(head), view.mapping.head_dim, Eigen::OuterStride<>(view.mapping.token_stride())};
}

/// Rows of `head` of a chunk tensor: (tok, dim).
template <class T>
head_map<T> head_rows(const kv_tensor<T>& t, index_t head) {
  const index_t stride = t.order == kv_layout::nhd ? t.num_heads * t.head_dim : t.head_dim;
  return {t.data + t.offset(0, head), t.num_tokens, t.head_dim, Eigen::OuterStride<>(stride)};
}

}  // namespace kvcap::host
