#pragma once
// kvcap/structures/spatial_grid.hpp — one image as an H×W grid of tokens, optionally tiled.
//
// Positions follow Qwen2-VL's M-RoPE: (t, h, w) = (0, row, col).

#include "grid_geometry.hpp"

namespace kvcap::structures {

struct spatial_grid {
  index_t rows = 0, cols = 0;
  index_t tile_rows = 0, tile_cols = 0;  ///< 0: raster order

  constexpr grid_geometry geometry() const { return {1, rows, cols, tile_rows, tile_cols}; }
  constexpr index_t num_tokens() const { return rows * cols; }
  constexpr token_meta meta(index_t tok) const {
    const auto c = geometry().at(tok);
    token_meta m{};
    m.index = tok;
    m.position = {0, static_cast<std::int32_t>(c.row), static_cast<std::int32_t>(c.col)};
    m.row = static_cast<std::int16_t>(c.row);
    m.col = static_cast<std::int16_t>(c.col);
    m.kind = segment_kind::image;
    return m;
  }
  constexpr boundary boundary_before(index_t tok) const { return geometry().boundary_at(tok); }
  constexpr bool neighbour(index_t tok, grid_offset d, index_t& out) const {
    return geometry().neighbour(tok, d, out);
  }
  constexpr meta_check check(const token_meta& m) const { return check_on_grid(*this, m); }
};
static_assert(structure<spatial_grid>);

}  // namespace kvcap::structures
