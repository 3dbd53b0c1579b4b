#pragma once
// kvcap/structures/grid_geometry.hpp — token order of a T×H×W visual segment.
//
// Tokens run frame by frame. Inside a frame they run in raster order, or tile-major when
// tiles are declared (tiles in raster order, tokens in raster order inside each tile, as
// InternVL's 448-px tiles are fed). Tiles must divide the grid (a compressor checks it).
// An empty geometry (a segment of no tokens) has no coordinates: at() answers (0, 0, 0)
// and nothing is its neighbour.

#include "../core/config.hpp"
#include "concept.hpp"

namespace kvcap::structures {

struct grid_geometry {
  index_t frames = 1, rows = 0, cols = 0;
  index_t tile_rows = 0, tile_cols = 0;  ///< 0: no tiles (raster order)

  constexpr bool tiled() const { return tile_rows > 0 && tile_cols > 0; }
  constexpr index_t frame_tokens() const { return rows * cols; }
  constexpr index_t num_tokens() const { return frames * rows * cols; }

  /// Offset of (frame, row, col) from the segment's first token.
  constexpr index_t offset(index_t frame, index_t row, index_t col) const {
    index_t in_frame = row * cols + col;
    if (tiled()) {
      const index_t tile = (row / tile_rows) * (cols / tile_cols) + col / tile_cols;
      in_frame = tile * tile_rows * tile_cols + (row % tile_rows) * tile_cols + col % tile_cols;
    }
    return frame * frame_tokens() + in_frame;
  }

  struct coords {
    index_t frame, row, col;
  };
  constexpr coords at(index_t off) const {
    if (frame_tokens() == 0) return {0, 0, 0};
    const index_t frame = off / frame_tokens(), in_frame = off % frame_tokens();
    if (!tiled()) return {frame, in_frame / cols, in_frame % cols};
    // tiled(): both tile sides > 0, and a compressor checks that they divide the grid.
    // NOLINTNEXTLINE(clang-analyzer-core.DivideZero): the analyzer lets the product wrap.
    const index_t tile_size = tile_rows * tile_cols, tile = in_frame / tile_size,
                  in_tile = in_frame % tile_size, tiles_per_row = cols / tile_cols;
    return {frame, (tile / tiles_per_row) * tile_rows + in_tile / tile_cols,
            (tile % tiles_per_row) * tile_cols + in_tile % tile_cols};
  }

  constexpr boundary boundary_at(index_t off) const {
    if (frame_tokens() == 0) return boundary::frame;
    const index_t in_frame = off % frame_tokens();
    if (in_frame == 0) return boundary::frame;
    if (tiled() && in_frame % (tile_rows * tile_cols) == 0) return boundary::tile;
    if (in_frame % (tiled() ? tile_cols : cols) == 0) return boundary::row;
    return boundary::token;
  }

  /// Offset of the token `d` away from the one at `off`; false if it leaves the grid.
  constexpr bool neighbour(index_t off, grid_offset d, index_t& out) const {
    if (frame_tokens() == 0) return false;
    const coords c = at(off);
    const index_t t = c.frame + d.dt, r = c.row + d.dh, w = c.col + d.dw;
    if (t < 0 || t >= frames || r < 0 || r >= rows || w < 0 || w >= cols) return false;
    out = offset(t, r, w);
    return true;
  }

  constexpr meta_check check(const token_meta& m) const {
    if (m.frame < 0 || m.frame >= frames) return {false, "frame", frames, m.frame};
    if (m.row < 0 || m.row >= rows) return {false, "row", rows, m.row};
    if (m.col < 0 || m.col >= cols) return {false, "col", cols, m.col};
    return {};
  }
};

/// Token metadata against what the structure says of its logical index (`want` =
/// structure.meta(m.index)): the neighbour lookups read the index alone, so the grid
/// coordinates, segment and kind must agree with it. Positions and the protected flag are
/// the engine's own.
constexpr meta_check same_place(const token_meta& m, const token_meta& want) {
  if (m.segment != want.segment) return {false, "segment", want.segment, m.segment, true};
  if (m.kind != want.kind)
    return {false, "kind", static_cast<index_t>(want.kind), static_cast<index_t>(m.kind), true};
  if (m.frame != want.frame) return {false, "frame", want.frame, m.frame, true};
  if (m.row != want.row) return {false, "row", want.row, m.row, true};
  if (m.col != want.col) return {false, "col", want.col, m.col, true};
  return {};
}

/// The check of a structure that is one grid (spatial_grid, temporal_frames): the index
/// inside the prompt, the coordinates inside the grid, then same_place.
template <class GridStructure>
constexpr meta_check check_on_grid(const GridStructure& s, const token_meta& m) {
  if (m.index < 0 || m.index >= s.num_tokens()) return {false, "index", s.num_tokens(), m.index};
  const meta_check in_grid = s.geometry().check(m);
  return in_grid.ok ? same_place(m, s.meta(m.index)) : in_grid;
}

}  // namespace kvcap::structures
