#pragma once
// kvcap/structures/temporal_frames.hpp — a video as T frames of H×W tokens.
//
// Positions follow Qwen2-VL's M-RoPE: (t, h, w) = (frame, row, col). The temporal
// neighbour of a token is the same patch in the previous frame: grid_offset{-1, 0, 0}.

#include "grid_geometry.hpp"

namespace kvcap::structures {

struct temporal_frames {
  index_t frames = 0, rows = 0, cols = 0;

  constexpr grid_geometry geometry() const { return {frames, rows, cols}; }
  constexpr index_t num_tokens() const { return frames * rows * cols; }
  constexpr token_meta meta(index_t tok) const {
    const auto c = geometry().at(tok);
    token_meta m{};
    m.index = tok;
    m.position = {static_cast<std::int32_t>(c.frame), static_cast<std::int32_t>(c.row),
                  static_cast<std::int32_t>(c.col)};
    m.frame = static_cast<std::int32_t>(c.frame);
    m.row = static_cast<std::int16_t>(c.row);
    m.col = static_cast<std::int16_t>(c.col);
    m.kind = segment_kind::video;
    return m;
  }
  constexpr boundary boundary_before(index_t tok) const { return geometry().boundary_at(tok); }
  constexpr bool neighbour(index_t tok, grid_offset d, index_t& out) const {
    return geometry().neighbour(tok, d, out);
  }
  constexpr meta_check check(const token_meta& m) const { return check_on_grid(*this, m); }
};
static_assert(structure<temporal_frames>);

}  // namespace kvcap::structures
