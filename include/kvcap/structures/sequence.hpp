#pragma once
// kvcap/structures/sequence.hpp — plain text: a 1-D run of tokens.

#include "concept.hpp"

namespace kvcap::structures {

struct sequence {
  index_t length = 0;
  index_t num_protected = 0;  ///< the first tokens (e.g. a system prompt) are protected

  constexpr index_t num_tokens() const { return length; }
  constexpr token_meta meta(index_t tok) const {
    const auto p = static_cast<std::int32_t>(tok);
    token_meta m{};
    m.index = tok;
    m.position = {p, p, p};
    m.is_protected = tok < num_protected;
    return m;
  }
  constexpr boundary boundary_before(index_t) const { return boundary::token; }
  constexpr bool neighbour(index_t tok, grid_offset d, index_t& out) const {
    if (d.dt != 0 || d.dh != 0) return false;
    const index_t n = tok + d.dw;
    if (n < 0 || n >= length) return false;
    out = n;
    return true;
  }
  constexpr meta_check check(const token_meta& m) const {
    if (m.kind != segment_kind::text) return {false, "kind", 0, static_cast<index_t>(m.kind), true};
    return {};
  }
};
static_assert(structure<sequence>);

}  // namespace kvcap::structures
