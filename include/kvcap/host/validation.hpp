#pragma once
// kvcap/host/validation.hpp — the shape a host compressor is declared with, and every check
// of a caller's argument against it.
//
// compressor_shape lives here because every check below is made against it; host/compressor.hpp
// includes this header, so kvcap::host::compressor_shape is reached as before. The checks only
// read: the compressor runs them all before it writes anything, which is what makes a call
// that throws kvcap::error leave the cache byte-identical. They run on every chunk, so they
// must not allocate: composed messages go through detail::lazy and are formatted only on
// failure. Messages are part of the interface (tests and engine authors read them).

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "../budgets/concept.hpp"
#include "../core/error.hpp"
#include "../core/kv_tensor.hpp"
#include "../core/layer_view.hpp"
#include "../core/token_meta.hpp"
#include "../structures/concept.hpp"
#include "../structures/grid_geometry.hpp"

namespace kvcap::host {

/// Extents every layer shares, declared once.
struct compressor_shape {
  index_t num_layers = 1;
  index_t num_kv_heads = 1;
  index_t num_q_heads = 1;  ///< a multiple of num_kv_heads (GQA groups)
  index_t head_dim = 0;
  index_t max_chunk = 0;    ///< most tokens one append may bring once the cache is at budget
  index_t max_window = 0;   ///< most observation-window queries (window scorers need > 0)
};

/// The declared shape itself. `window_scorer`: the scorer reads an observation window, so
/// max_window must leave room for one.
inline void validate_shape(const compressor_shape& shape, bool window_scorer) {
  using detail::require;
  require(shape.num_layers > 0, "shape.num_layers", "> 0", shape.num_layers);
  require(shape.num_kv_heads > 0, "shape.num_kv_heads", "> 0", shape.num_kv_heads);
  require(shape.head_dim > 0, "shape.head_dim", "> 0", shape.head_dim);
  require(shape.max_chunk > 0, "shape.max_chunk", "> 0", shape.max_chunk);
  require(shape.num_q_heads > 0 && shape.num_q_heads % shape.num_kv_heads == 0, "shape.num_q_heads",
          detail::lazy("a positive multiple of num_kv_heads (", shape.num_kv_heads, ")"), shape.num_q_heads);
  require(shape.max_window >= 0, "shape.max_window", ">= 0", shape.max_window);
  if (window_scorer) require(shape.max_window > 0, "shape.max_window", "> 0 for a window scorer", shape.max_window);
}

/// a + b and a * b for the sizes the constructor derives from its arguments (capacities,
/// element and byte counts): kvcap::error naming `argument` when one would not fit in index_t.
inline index_t checked_add(const char* argument, index_t a, index_t b) {
  detail::require(a >= 0 && b >= 0 && a <= std::numeric_limits<index_t>::max() - b, argument,
                  "sizes that fit in 64-bit index arithmetic", detail::lazy(a, " + ", b));
  return a + b;
}
inline index_t checked_mul(const char* argument, index_t a, index_t b) {
  detail::require(a >= 0 && b >= 0 && (b == 0 || a <= std::numeric_limits<index_t>::max() / b), argument,
                  "sizes that fit in 64-bit index arithmetic", detail::lazy(a, " * ", b));
  return a * b;
}

/// A budget's own settings, where tokens_for cannot reject them by its result.
template <budget Budget>
void validate_budget(const Budget& b) {
  if constexpr (requires { b.min_head_fraction; })
    detail::require(std::isfinite(b.min_head_fraction) && b.min_head_fraction >= 0 && b.min_head_fraction <= 1,
                    "budget.min_head_fraction", "a finite fraction in [0, 1]", b.min_head_fraction);
}

/// One grid: extents that fit token_meta's coordinates (positive; a segment of a mixed
/// prompt may be empty), and tiles, if any, that divide it.
inline void validate_geometry(const char* name, const structures::grid_geometry& g, bool may_be_empty) {
  using detail::lazy;
  using detail::require;
  constexpr index_t most = std::numeric_limits<std::int16_t>::max();  // token_meta::row, col
  const index_t least = may_be_empty ? 0 : 1;
  require(g.frames >= least && g.frames <= std::numeric_limits<std::int32_t>::max(), name,
          lazy("frames in [", least, ", 2^31)"), g.frames);
  require(g.rows >= least && g.rows <= most, name, lazy("rows in [", least, ", ", most, "]"), g.rows);
  require(g.cols >= least && g.cols <= most, name, lazy("cols in [", least, ", ", most, "]"), g.cols);
  if (g.tile_rows == 0 && g.tile_cols == 0) return;
  require(g.tile_rows > 0 && g.rows % g.tile_rows == 0, name, lazy("tile_rows > 0 dividing rows = ", g.rows),
          g.tile_rows);
  require(g.tile_cols > 0 && g.cols % g.tile_cols == 0, name, lazy("tile_cols > 0 dividing cols = ", g.cols),
          g.tile_cols);
}

/// The structure model handed to a compressor: every grid it declares.
template <structure Structure>
void validate_structure(const Structure& s) {
  if constexpr (requires { s.geometry(); }) validate_geometry("structure", s.geometry(), false);
  if constexpr (requires { s.segments; })
    for (const auto& seg : s.segments) validate_geometry("structure.segments[]", seg.geometry, true);
}

/// One engine-owned layer handed to the non-owning constructor: it must hold `capacity`
/// (= budget + max_chunk) tokens of the declared heads and dim. A paged view's own fields
/// must address its pool: a page size, a pool that covers the logical pages, and a block
/// table whose entries are pages of that pool.
template <class T, layout Layout>
void validate_engine_layer(const compressor_shape& shape, const layer_view<T, Layout>& e, index_t capacity) {
  using detail::lazy;
  using detail::require;
  require(e.k != nullptr && e.v != nullptr && e.meta != nullptr, "engine_layers[layer]", "non-null k, v and meta",
          "a null pointer");
  require(e.mapping.num_heads == shape.num_kv_heads, "engine_layers[layer].mapping.num_heads", shape.num_kv_heads,
          e.mapping.num_heads);
  require(e.mapping.head_dim == shape.head_dim, "engine_layers[layer].mapping.head_dim", shape.head_dim,
          e.mapping.head_dim);
  require(e.mapping.capacity >= capacity, "engine_layers[layer].mapping.capacity",
          lazy(">= budget + max_chunk = ", capacity), e.mapping.capacity);
  if constexpr (requires { e.mapping.page_size; }) {
    const auto& m = e.mapping;
    require(m.page_size > 0, "engine_layers[layer].mapping.page_size", "> 0", m.page_size);
    const index_t logical = m.capacity / m.page_size + (m.capacity % m.page_size != 0);
    require(m.num_pages >= 0, "engine_layers[layer].mapping.num_pages", ">= 0 (0: the logical pages)", m.num_pages);
    const index_t pool = m.num_pages > 0 ? m.num_pages : logical;
    if (m.block_table == nullptr)
      require(pool >= logical, "engine_layers[layer].mapping.num_pages",
              lazy(">= the logical pages of the capacity = ", logical, " (no block table: page p is pool page p)"),
              m.num_pages);
    const char* pool_size = "engine_layers[layer].mapping.num_pages (pool elements)";
    checked_mul(pool_size, checked_mul(pool_size, pool, m.page_size), checked_mul(pool_size, m.num_heads, m.head_dim));
    if (m.block_table != nullptr)
      for (index_t page = 0; page < logical; ++page)
        require(m.block_table[page] >= 0 && m.block_table[page] < pool, "engine_layers[layer].mapping.block_table[]",
                lazy("a page of the pool, in [0, ", pool, "), at logical page ", page), m.block_table[page]);
  }
}

/// Every element of `t` is finite: a NaN or inf would flow into head-wide sums (the mean
/// unit key, the window softmax) and from there into every score of its head.
template <class T>
void check_finite(const char* name, const kv_tensor<const T>& t) {
  for (index_t i = 0, size = t.size(); i < size; ++i)
    if (!std::isfinite(static_cast<float>(t.data[i])))
      detail::require(false, name, "finite values", detail::concat(static_cast<float>(t.data[i]), " at element ", i));
}

/// Where one layer stands when a chunk arrives: what the chunk must fit into and continue.
struct append_limits {
  index_t budget = 0;         // the layer's budget
  index_t resident = 0;       // resident tokens (of the fullest head)
  index_t room = 0;           // tokens every head can still take
  index_t next_index = 0;     // logical index the next token must exceed or equal
  std::int32_t last_t = 0;    // temporal position of the last appended token
  index_t num_protected = 0;  // protected tokens resident (the same in every head)
};

/// A chunk's keys, values and metadata, appended to a layer that stands at `at`.
template <class T, structure Structure>
void validate_chunk(const compressor_shape& shape, const Structure& structure, const append_limits& at,
                    const kv_tensor<const T>& k, const kv_tensor<const T>& v, std::span<const token_meta> meta) {
  using detail::lazy;
  using detail::require;
  const index_t n = k.num_tokens;
  require(k.num_heads == shape.num_kv_heads, "k.num_heads", shape.num_kv_heads, k.num_heads);
  require(k.head_dim == shape.head_dim, "k.head_dim", shape.head_dim, k.head_dim);
  require(v.num_tokens == n, "v.num_tokens", lazy("k.num_tokens = ", n), v.num_tokens);
  require(v.num_heads == shape.num_kv_heads, "v.num_heads", shape.num_kv_heads, v.num_heads);
  require(v.head_dim == shape.head_dim, "v.head_dim", shape.head_dim, v.head_dim);
  require(static_cast<index_t>(meta.size()) == n, "meta.size()", lazy("k.num_tokens = ", n), meta.size());
  require(n == 0 || (k.data != nullptr && v.data != nullptr), "k.data, v.data", "non-null", "nullptr");
  require(n <= at.room, "k.num_tokens",
          lazy("<= capacity - resident = ", at.room, " (budget ", at.budget, " + max_chunk ", shape.max_chunk,
               " - resident ", at.resident, "); compress before appending again"),
          n);
  index_t prev_index = at.next_index - 1;
  std::int32_t prev_t = at.last_t;
  index_t protected_after = at.num_protected;
  for (index_t tok = 0; tok < n; ++tok) {
    const token_meta& m = meta[tok];
    require(m.index > prev_index, "meta[].index", lazy("> ", prev_index, " (strictly increasing) at token ", tok),
            m.index);
    require(m.position.t >= prev_t, "meta[].position.t",
            lazy(">= ", prev_t, " (positions never go backwards) at token ", tok), m.position.t);
    require(m.size == 1, "meta[].size", lazy("1 for an appended token, at token ", tok), m.size);
    const meta_check c = structure.check(m);
    require(c.ok, (std::string("meta[].") + c.field).c_str(),
            lazy(c.exact ? "== " : "< ", c.limit, " (declared structure) at token ", tok), c.got);
    prev_index = m.index;
    prev_t = m.position.t;
    protected_after += m.is_protected;
  }
  require(protected_after <= at.budget, "meta[].is_protected",
          lazy("at most budget = ", at.budget, " protected tokens resident"), protected_after);
  check_finite("k", k);
  check_finite("v", v);
}

/// An observation window of queries for a compress of a layer holding `resident` tokens.
/// `window_scorer`: the scorer needs one. `chunk_tail`: the window is the last queries of the
/// cache itself, so it cannot be longer than what is resident (in the fullest head: in a
/// shorter one, the queries before its first slot see none of its keys and add nothing).
template <class T>
void validate_window(const compressor_shape& shape, bool window_scorer, index_t resident,
                     const kv_tensor<const T>& window, bool chunk_tail) {
  using detail::lazy;
  using detail::require;
  if (window_scorer)
    require(window.data != nullptr && window.num_tokens > 0, "window", "an observation window of queries", "none");
  if (window.data == nullptr) return;
  require(window.num_heads == shape.num_q_heads, "window.num_heads", shape.num_q_heads, window.num_heads);
  require(window.head_dim == shape.head_dim, "window.head_dim", shape.head_dim, window.head_dim);
  require(window.num_tokens <= shape.max_window, "window.num_tokens",
          lazy("<= shape.max_window = ", shape.max_window), window.num_tokens);
  if (chunk_tail)
    require(window.num_tokens <= resident, "window.num_tokens",
            lazy("<= resident tokens = ", resident, " (the window is the chunk's tail)"), window.num_tokens);
  check_finite("window", window);
}

}  // namespace kvcap::host
