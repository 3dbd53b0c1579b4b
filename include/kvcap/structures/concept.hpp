#pragma once
// kvcap/structures/concept.hpp — what a structure model must offer.
//
// A structure model describes the prompt as the engine will feed it: how many tokens, what
// each one is (its metadata, M-RoPE position included), who its neighbours are in space
// and time, and where a prefill chunk may end without cutting a visual unit apart. It maps
// coordinates to logical token indices so that scorers and planners never do index maths.

#include <concepts>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/token_meta.hpp"

namespace kvcap {

/// A step in (frame, row, col).
struct grid_offset {
  index_t dt = 0, dh = 0, dw = 0;
};

/// How strong a chunk boundary is just before a token. Chunk planners prefer the highest.
enum class boundary : int { token = 0, row = 1, tile = 2, frame = 3, segment = 4 };

/// Outcome of checking a token's metadata against the declared structure.
struct meta_check {
  bool ok = true;
  const char* field = "";  ///< the offending metadata field
  index_t limit = 0;       ///< it must be < limit, or == limit when `exact`
  index_t got = 0;
  bool exact = false;
};

template <class S>
concept structure = std::is_trivially_copyable_v<S> &&
    requires(const S s, index_t tok, grid_offset d, index_t& out, const token_meta& m) {
      { s.num_tokens() } -> std::same_as<index_t>;
      { s.meta(tok) } -> std::same_as<token_meta>;           ///< metadata of prompt token tok
      { s.boundary_before(tok) } -> std::same_as<boundary>;  ///< strength of a cut before tok
      { s.neighbour(tok, d, out) } -> std::same_as<bool>;    ///< false when outside the grid
      { s.check(m) } -> std::same_as<meta_check>;
    };

}  // namespace kvcap
