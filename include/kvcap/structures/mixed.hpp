#pragma once
// kvcap/structures/mixed.hpp — a prompt of text, image and video segments, in order.
//
// Each segment is a grid geometry (text: 1×1×length) with a kind and a protected flag
// (system prompt, question). Positions follow Qwen2-VL's M-RoPE rule: text advances one
// position per token; a visual segment starting at position p puts its token at
// (p + frame, p + row, p + col) and the next segment starts at p + max(frames, rows, cols).
// Neighbours never cross a segment. The segment list lives in the caller's memory.

#include <algorithm>
#include <span>

#include "grid_geometry.hpp"

namespace kvcap::structures {

struct segment {
  segment_kind kind = segment_kind::text;
  grid_geometry geometry{};
  bool is_protected = false;

  static constexpr segment text(index_t length, bool is_protected = false) {
    return {segment_kind::text, {1, 1, length}, is_protected};
  }
  static constexpr segment image(index_t rows, index_t cols, index_t tile_rows = 0, index_t tile_cols = 0) {
    return {segment_kind::image, {1, rows, cols, tile_rows, tile_cols}, false};
  }
  static constexpr segment video(index_t frames, index_t rows, index_t cols) {
    return {segment_kind::video, {frames, rows, cols}, false};
  }
  constexpr index_t num_tokens() const { return geometry.num_tokens(); }
  /// Rotary positions this segment spans.
  constexpr index_t position_span() const {
    if (kind == segment_kind::text) return num_tokens();
    return std::max({geometry.frames, geometry.rows, geometry.cols});
  }
};

struct mixed {
  std::span<const segment> segments;

  struct location {
    index_t segment = 0, begin = 0, position = 0;  ///< first token and first position of it
  };
  /// The segment holding prompt token `tok` (tok < num_tokens()).
  constexpr location locate(index_t tok) const {
    location at{};
    for (; at.segment + 1 < static_cast<index_t>(segments.size()); ++at.segment) {
      const segment& s = segments[at.segment];
      if (tok < at.begin + s.num_tokens()) break;
      at.begin += s.num_tokens();
      at.position += s.position_span();
    }
    return at;
  }

  constexpr index_t num_tokens() const {
    index_t n = 0;
    for (const segment& s : segments) n += s.num_tokens();
    return n;
  }

  constexpr token_meta meta(index_t tok) const {
    const location at = locate(tok);
    const segment& s = segments[at.segment];
    const auto c = s.geometry.at(tok - at.begin);
    const auto p = static_cast<std::int32_t>(at.position);
    token_meta m{};
    m.index = tok;
    m.segment = static_cast<std::uint16_t>(at.segment);
    m.kind = s.kind;
    m.is_protected = s.is_protected;
    if (s.kind == segment_kind::text) {
      const auto t = p + static_cast<std::int32_t>(tok - at.begin);
      m.position = {t, t, t};
    } else {
      m.position = {p + static_cast<std::int32_t>(c.frame), p + static_cast<std::int32_t>(c.row),
                    p + static_cast<std::int32_t>(c.col)};
      m.frame = static_cast<std::int32_t>(c.frame);
      m.row = static_cast<std::int16_t>(c.row);
      m.col = static_cast<std::int16_t>(c.col);
    }
    return m;
  }

  constexpr boundary boundary_before(index_t tok) const {
    const location at = locate(tok);
    if (tok == at.begin) return boundary::segment;
    const segment& s = segments[at.segment];
    return s.kind == segment_kind::text ? boundary::token : s.geometry.boundary_at(tok - at.begin);
  }

  constexpr bool neighbour(index_t tok, grid_offset d, index_t& out) const {
    const location at = locate(tok);
    index_t off = 0;
    if (!segments[at.segment].geometry.neighbour(tok - at.begin, d, off)) return false;
    out = at.begin + off;
    return true;
  }

  constexpr meta_check check(const token_meta& m) const {
    if (m.index < 0 || m.index >= num_tokens()) return {false, "index", num_tokens(), m.index};
    const auto count = static_cast<index_t>(segments.size());
    if (m.segment >= count) return {false, "segment", count, m.segment};
    const segment& s = segments[m.segment];
    if (m.kind != s.kind) return {false, "kind", static_cast<index_t>(s.kind), static_cast<index_t>(m.kind), true};
    if (s.kind != segment_kind::text)
      if (const meta_check in_grid = s.geometry.check(m); !in_grid.ok) return in_grid;
    return same_place(m, meta(m.index));
  }
};
static_assert(structure<mixed>);

}  // namespace kvcap::structures
