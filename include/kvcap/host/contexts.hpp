#pragma once
// kvcap/host/contexts.hpp — the host executor's score and reduce contexts.
//
// Both give a policy one (layer, head) of the cache (core/segment_access.hpp, as the device's
// contexts do) through exactly the API documented by the archetypes in scorers/concept.hpp
// and reducers/concept.hpp.

#include <cstdint>

#include "../core/segment_access.hpp"

namespace kvcap::host {

template <class T, layout Layout, structure Structure>
struct score_context : segment_access<T, Layout, Structure> {
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
struct reduce_context : segment_access<T, Layout, Structure> {
  const std::uint8_t* keep_;  // (tok)
  bool is_kept(index_t tok) const { return keep_[tok] != 0; }
};

}  // namespace kvcap::host
