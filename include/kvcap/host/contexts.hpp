#pragma once
// kvcap/host/contexts.hpp — the host executor's score and reduce contexts.
//
// Both give a policy one (layer, head) of the cache through exactly the API documented by
// the archetypes in scorers/concept.hpp and reducers/concept.hpp.

#include <cstdint>

#include "../core/layer_view.hpp"

namespace kvcap::host {

template <class T, layout Layout>
struct score_context {
  const layer_view<T, Layout>* view;
  index_t head_, next_index_;
  const float* mean_unit_key_;  // (dim), when the scorer asked for it

  index_t num_tokens() const { return view->length; }
  index_t head() const { return head_; }
  index_t head_dim() const { return view->mapping.head_dim; }
  index_t next_index() const { return next_index_; }
  vector_ref<const T> key(index_t tok) const { return {view->k + view->mapping(tok, head_), head_dim()}; }
  vector_ref<const T> value(index_t tok) const { return {view->v + view->mapping(tok, head_), head_dim()}; }
  const token_meta& meta(index_t tok) const { return view->meta_at(tok, head_); }
  vector_ref<const float> mean_unit_key() const { return {mean_unit_key_, head_dim()}; }
};

template <class T, layout Layout>
struct reduce_context {
  const layer_view<T, Layout>* view;
  index_t head_;
  const std::uint8_t* keep_;  // (tok)

  index_t num_tokens() const { return view->length; }
  index_t head_dim() const { return view->mapping.head_dim; }
  bool is_kept(index_t tok) const { return keep_[tok] != 0; }
  vector_ref<T> key(index_t tok) const { return view->key(tok, head_); }
  vector_ref<T> value(index_t tok) const { return view->value(tok, head_); }
  token_meta& meta(index_t tok) const { return view->meta_at(tok, head_); }
};

}  // namespace kvcap::host
