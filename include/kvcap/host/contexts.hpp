#pragma once
// kvcap/host/contexts.hpp — the host executor's score and reduce contexts.
//
// Both give a policy one (layer, head) of the cache through exactly the API documented by
// the archetypes in scorers/concept.hpp and reducers/concept.hpp.

#include <cstdint>

#include "../core/layer_view.hpp"
#include "../core/slot_lookup.hpp"
#include "../structures/concept.hpp"

namespace kvcap::host {

/// One head of one layer, plus the structure model that names each token's neighbours.
template <class T, layout Layout, structure Structure>
struct head_access {
  const layer_view<T, Layout>* view;
  const Structure* structure;
  index_t head_;

  index_t num_tokens() const { return view->length_of(head_); }
  index_t head() const { return head_; }
  index_t head_dim() const { return view->mapping.head_dim; }
  vector_ref<T> key(index_t tok) const { return view->key(tok, head_); }
  vector_ref<T> value(index_t tok) const { return view->value(tok, head_); }
  token_meta& meta(index_t tok) const { return view->meta_at(tok, head_); }

  bool neighbour(index_t tok, grid_offset d, index_t& slot) const {
    return neighbour_slot(*view, *structure, head_, num_tokens(), tok, d, slot);
  }
};

template <class T, layout Layout, structure Structure>
struct score_context : head_access<T, Layout, Structure> {
  index_t next_index_;
  const float* mean_unit_key_;  // (dim), when the scorer asked for it
  const float* window_mass_;    // (tok), when the scorer asked for it

  index_t next_index() const { return next_index_; }
  vector_ref<const T> key(index_t tok) const { return this->view->key(tok, this->head_); }
  vector_ref<const T> value(index_t tok) const { return this->view->value(tok, this->head_); }
  const token_meta& meta(index_t tok) const { return this->view->meta_at(tok, this->head_); }
  vector_ref<const float> mean_unit_key() const { return {mean_unit_key_, this->head_dim()}; }
  float window_mass(index_t tok) const { return window_mass_[tok]; }
};

template <class T, layout Layout, structure Structure>
struct reduce_context : head_access<T, Layout, Structure> {
  const std::uint8_t* keep_;  // (tok)
  bool is_kept(index_t tok) const { return keep_[tok] != 0; }
};

}  // namespace kvcap::host
