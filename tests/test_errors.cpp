// Bad input is a kvcap::error that names the argument and the expected value, and leaves
// the cache byte-identical: K, V and metadata buffers of every layer (whole capacity, not
// only the resident slots, so a partly applied write would show), lengths, logical
// lengths and resident bytes are snapshotted before each bad call and compared after.
// Afterwards the compressor still accepts a valid chunk.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

using namespace kvcap;

template <class T = float, class Structure = structures::sequence>
struct fixture {
  static constexpr index_t layers = 2, heads = 2, q_heads = 4, dim = 3, budget = 5, max_chunk = 3, max_window = 2;
  using comp = host::compressor<T, layouts::nhd, scorers::key_norm, budgets::fixed_tokens, reducers::evict, Structure>;

  struct snapshot {
    std::vector<std::vector<unsigned char>> k, v, meta;
    std::vector<index_t> length, logical_length;
    std::size_t resident_bytes = 0;
    bool operator==(const snapshot&) const = default;
  };

  Structure structure;
  comp c;
  index_t next = 0;  // next prompt token

  explicit fixture(Structure s = default_structure())
      : structure(s),
        c({.num_layers = layers, .num_kv_heads = heads, .num_q_heads = q_heads, .head_dim = dim,
           .max_chunk = max_chunk, .max_window = max_window},
          {.budget = {budget}, .structure = s}) {
    // Write every slot once (so the whole buffers are defined), then back to budget.
    append_valid(budget + max_chunk);
    for (index_t layer = 0; layer < layers; ++layer) c.compress(layer);
  }
  static Structure default_structure() {
    if constexpr (std::is_same_v<Structure, structures::sequence>) return {.length = 1000};
    else return {};
  }

  std::vector<T> values(index_t n, int salt) const {
    std::vector<T> out(static_cast<std::size_t>(n * heads * dim));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = T(static_cast<float>((i * 7 + salt * 13 + next) % 9) - 4.f);
    return out;
  }
  std::vector<token_meta> metas(index_t n) const {
    std::vector<token_meta> out;
    for (index_t tok = next; tok < next + n; ++tok) out.push_back(structure.meta(tok));
    return out;
  }
  void append_valid(index_t n) {
    const auto meta = metas(n);
    for (index_t layer = 0; layer < layers; ++layer) {
      const auto k = values(n, 1 + static_cast<int>(layer)), v = values(n, 5 + static_cast<int>(layer));
      c.append(layer, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
    }
    next += n;
  }

  snapshot take() const {
    snapshot s;
    for (index_t layer = 0; layer < layers; ++layer) {
      const auto& view = c.layer(layer);
      const auto elems = static_cast<std::size_t>(view.mapping.required_span_size()) * sizeof(T);
      const auto metas = static_cast<std::size_t>(view.capacity() * heads) * sizeof(token_meta);
      const auto* kb = reinterpret_cast<const unsigned char*>(view.k);
      const auto* vb = reinterpret_cast<const unsigned char*>(view.v);
      const auto* mb = reinterpret_cast<const unsigned char*>(view.meta);
      s.k.emplace_back(kb, kb + elems);
      s.v.emplace_back(vb, vb + elems);
      s.meta.emplace_back(mb, mb + metas);
      s.length.push_back(c.length(layer));
      s.logical_length.push_back(c.logical_length(layer));
    }
    s.resident_bytes = c.memory().resident_bytes;
    return s;
  }

  /// `bad` must throw kvcap::error naming `argument` with every string of `in_message` in
  /// its message, and change nothing.
  template <class F>
  void expect_rejected(F&& bad, const std::string& argument, std::initializer_list<std::string> in_message) {
    const snapshot before = take();
    bool thrown = false;
    try {
      bad();
    } catch (const error& e) {
      thrown = true;
      CHECK(e.argument() == argument);
      const std::string what = e.what();
      CHECK(what.find("'" + argument + "'") != std::string::npos);
      for (const std::string& s : in_message) CHECK_MESSAGE(what.find(s) != std::string::npos, what, " lacks ", s);
    }
    CHECK_MESSAGE(thrown, "no kvcap::error for ", argument);
    CHECK(take() == before);
    // Still usable: a valid chunk goes in and compresses back to budget.
    const index_t room = budget + max_chunk - c.length(0);
    const index_t n = std::min<index_t>(2, room);
    const auto good = take();
    append_valid(n);
    CHECK(c.length(0) == good.length[0] + n);
    for (index_t layer = 0; layer < layers; ++layer) c.compress(layer);
    CHECK(c.length(0) <= budget);
  }

  /// The chunk arguments of a bad append: a valid 3-token chunk the test then spoils.
  struct chunk {
    std::vector<T> k, v;
    std::vector<token_meta> meta;
    index_t n;
  };
  chunk valid_chunk(index_t n = max_chunk) const { return {values(n, 2), values(n, 3), metas(n), n}; }
};

const std::string element_17 = "at element 17";  // 3 tokens x 2 heads x 3 dims: the last element

}  // namespace

TEST_CASE("wrong shapes are refused") {
  fixture<> f;
  auto ch = f.valid_chunk();
  const index_t n = ch.n, h = f.heads, d = f.dim;
  SUBCASE("k.num_heads") {
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), n, 1, d * 2}, {ch.v.data(), n, h, d}, ch.meta); },
                      "k.num_heads", {"expected 2", "got 1"});
  }
  SUBCASE("k.head_dim") {
    f.expect_rejected([&] { f.c.append(1, {ch.k.data(), n, h, 1}, {ch.v.data(), n, h, d}, ch.meta); },
                      "k.head_dim", {"expected 3", "got 1"});
  }
  SUBCASE("v.num_tokens differs from k.num_tokens") {
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), n, h, d}, {ch.v.data(), n - 1, h, d}, ch.meta); },
                      "v.num_tokens", {"k.num_tokens = 3", "got 2"});
  }
  SUBCASE("v.num_heads") {
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), n, h, d}, {ch.v.data(), n, 3, 2}, ch.meta); }, "v.num_heads",
                      {"expected 2", "got 3"});
  }
  SUBCASE("v.head_dim") {
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), n, h, d}, {ch.v.data(), n, h, 1}, ch.meta); },
                      "v.head_dim", {"expected 3", "got 1"});
  }
  SUBCASE("meta.size()") {
    f.expect_rejected(
        [&] { f.c.append(0, {ch.k.data(), n, h, d}, {ch.v.data(), n, h, d}, std::span(ch.meta).first(2)); },
        "meta.size()", {"k.num_tokens = 3", "got 2"});
  }
  SUBCASE("null data") {
    f.expect_rejected([&] { f.c.append(0, {nullptr, n, h, d}, {ch.v.data(), n, h, d}, ch.meta); }, "k.data, v.data",
                      {"non-null"});
  }
}

TEST_CASE("a chunk larger than capacity - resident is refused") {
  fixture<> f;  // resident 5 = budget, capacity 5 + 3
  SUBCASE("a chunk over max_chunk when resident == budget") {
    auto ch = f.valid_chunk(4);
    f.expect_rejected(
        [&] { f.c.append(0, {ch.k.data(), 4, 2, 3}, {ch.v.data(), 4, 2, 3}, ch.meta); }, "k.num_tokens",
        {"capacity - resident = 3", "budget 5", "max_chunk 3", "got 4"});
  }
  SUBCASE("appending twice without compress when at budget") {
    f.append_valid(3);  // resident 8: full
    REQUIRE(f.c.length(0) == 8);
    auto ch = f.valid_chunk(1);
    f.expect_rejected([&] { f.c.append(1, {ch.k.data(), 1, 2, 3}, {ch.v.data(), 1, 2, 3}, ch.meta); }, "k.num_tokens",
                      {"capacity - resident = 0", "compress before appending again", "got 1"});
  }
}

TEST_CASE("a budget smaller than the protected tokens is refused") {
  SUBCASE("protected tokens accumulate over chunks beyond the budget") {
    fixture<> f;
    auto ch = f.valid_chunk(3);
    for (auto& m : ch.meta) m.is_protected = true;
    for (index_t layer = 0; layer < f.layers; ++layer) {
      f.c.append(layer, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta);
      f.c.compress(layer);
    }
    f.next += 3;
    auto more = f.valid_chunk(3);
    for (auto& m : more.meta) m.is_protected = true;  // 3 + 3 = 6 protected > budget 5
    f.expect_rejected([&] { f.c.append(0, {more.k.data(), 3, 2, 3}, {more.v.data(), 3, 2, 3}, more.meta); },
                      "meta[].is_protected", {"at most budget = 5", "got 6"});
    // compress_to below the protected count is refused too.
    f.expect_rejected([&] { f.c.compress_to(1, 2); }, "tokens", {"protected resident = 3", "got 2"});
  }
  SUBCASE("a budget of zero tokens is refused at construction, allocating nothing") {
    host::counting_resource counted;
    using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_bytes>;
    try {
      // 2 heads x 4 dims x 4 bytes x 2 (K and V) = 64 bytes a token: 63 bytes hold none.
      comp c({.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 4, .max_chunk = 4},
             {.budget = {.bytes_per_layer = 63}}, &counted);
      FAIL("constructed with a zero-token budget");
    } catch (const error& e) {
      CHECK(e.argument() == "budget");
      CHECK(e.received() == "0");
    }
    CHECK(counted.allocations() == 0);
  }
}

TEST_CASE_TEMPLATE("NaN and Inf in k or v are refused", T, float, Eigen::half, Eigen::bfloat16) {
  fixture<T> f;
  auto ch = f.valid_chunk(3);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto append = [&] { f.c.append(1, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
  SUBCASE("NaN in k") {
    ch.k.back() = T(nan);
    f.expect_rejected(append, "k", {"finite values", "nan", element_17});
  }
  SUBCASE("Inf in k") {
    ch.k.back() = T(inf);
    f.expect_rejected(append, "k", {"finite values", "inf", element_17});
  }
  SUBCASE("NaN in v") {
    ch.v.back() = T(nan);
    f.expect_rejected(append, "v", {"finite values", "nan", element_17});
  }
  SUBCASE("-Inf in v") {
    ch.v.back() = T(-inf);
    f.expect_rejected(append, "v", {"finite values", "-inf", element_17});
  }
}

TEST_CASE("grid coordinates outside the declared grid are refused") {
  SUBCASE("temporal_frames 3 x 2 x 4") {
    fixture<float, structures::temporal_frames> f(structures::temporal_frames{.frames = 3, .rows = 2, .cols = 4});
    auto ch = f.valid_chunk(3);
    auto append = [&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
    SUBCASE("row") {
      ch.meta[2].row = 2;
      f.expect_rejected(append, "meta[].row", {"< 2", "at token 2", "got 2"});
    }
    SUBCASE("col") {
      ch.meta[1].col = 4;
      f.expect_rejected(append, "meta[].col", {"< 4", "at token 1", "got 4"});
    }
    SUBCASE("negative col") {
      ch.meta[0].col = -1;
      f.expect_rejected(append, "meta[].col", {"< 4", "got -1"});
    }
    SUBCASE("frame") {
      ch.meta[2].frame = 3;
      f.expect_rejected(append, "meta[].frame", {"< 3", "got 3"});
    }
  }
  SUBCASE("spatial_grid 4 x 4: an image has one frame") {
    fixture<float, structures::spatial_grid> f(structures::spatial_grid{.rows = 4, .cols = 4});
    auto ch = f.valid_chunk(2);
    ch.meta[1].frame = 1;
    f.expect_rejected([&] { f.c.append(1, {ch.k.data(), 2, 2, 3}, {ch.v.data(), 2, 2, 3}, ch.meta); },
                      "meta[].frame", {"< 1", "got 1"});
  }
  SUBCASE("mixed: wrong kind and unknown segment") {
    static const structures::segment segs[] = {structures::segment::text(4), structures::segment::image(4, 4)};
    fixture<float, structures::mixed> f(structures::mixed{segs});
    auto ch = f.valid_chunk(3);  // tokens 8..10: image tokens (segment 1)
    REQUIRE(ch.meta[0].kind == segment_kind::image);
    auto append = [&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
    SUBCASE("kind") {
      ch.meta[1].kind = segment_kind::video;
      f.expect_rejected(append, "meta[].kind", {"== 1", "got 2"});
    }
    SUBCASE("segment") {
      ch.meta[2].segment = 2;
      f.expect_rejected(append, "meta[].segment", {"< 2", "got 2"});
    }
    SUBCASE("row") {
      ch.meta[0].row = 4;
      f.expect_rejected(append, "meta[].row", {"< 4", "got 4"});
    }
  }
  SUBCASE("sequence: text only") {
    fixture<> f;
    auto ch = f.valid_chunk(1);
    ch.meta[0].kind = segment_kind::image;
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), 1, 2, 3}, {ch.v.data(), 1, 2, 3}, ch.meta); }, "meta[].kind",
                      {"== 0", "got 1"});
  }
}

TEST_CASE("positions that go backwards are refused") {
  fixture<> f;  // 8 tokens appended: logical indices 0..7, last position.t 7
  auto ch = f.valid_chunk(3);
  REQUIRE(ch.meta[0].index == 8);
  auto append = [&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
  SUBCASE("index repeated inside a chunk") {
    ch.meta[2].index = ch.meta[1].index;
    f.expect_rejected(append, "meta[].index", {"> 9", "at token 2", "got 9"});
  }
  SUBCASE("index not beyond the last appended one") {
    ch.meta[0].index = 7;
    ch.meta[1].index = 8;
    ch.meta[2].index = 9;
    f.expect_rejected(append, "meta[].index", {"> 7", "at token 0", "got 7"});
  }
  SUBCASE("position.t decreasing inside a chunk") {
    ch.meta[2].position.t = ch.meta[1].position.t - 1;
    f.expect_rejected(append, "meta[].position.t", {">= 9", "at token 2", "got 8"});
  }
  SUBCASE("position.t before the last appended token") {
    ch.meta[0].position.t = 6;
    f.expect_rejected(append, "meta[].position.t", {">= 7", "at token 0", "got 6"});
  }
  SUBCASE("a merged size on an appended token") {
    ch.meta[1].size = 2;
    f.expect_rejected(append, "meta[].size", {"1 for an appended token", "got 2"});
  }
}

TEST_CASE("a layer out of range is refused") {
  fixture<> f;
  auto ch = f.valid_chunk(1);
  f.expect_rejected([&] { f.c.append(2, {ch.k.data(), 1, 2, 3}, {ch.v.data(), 1, 2, 3}, ch.meta); }, "layer",
                    {"in [0, 2)", "got 2"});
  f.expect_rejected([&] { f.c.append(-1, {ch.k.data(), 1, 2, 3}, {ch.v.data(), 1, 2, 3}, ch.meta); }, "layer",
                    {"in [0, 2)", "got -1"});
  f.expect_rejected([&] { f.c.compress(7); }, "layer", {"in [0, 2)", "got 7"});
  f.expect_rejected([&] { (void)f.c.layer(2); }, "layer", {"got 2"});
  f.expect_rejected([&] { (void)f.c.length(-3); }, "layer", {"got -3"});
  f.expect_rejected([&] { (void)f.c.logical_length(2); }, "layer", {"got 2"});
}

TEST_CASE("a window of the wrong shape is refused by compress") {
  fixture<> f;
  f.append_valid(3);  // over budget: a compress that ran would change the cache
  REQUIRE(f.c.length(0) == 8);
  std::vector<float> q(3 * 4 * 3, 0.25f);
  SUBCASE("num_heads: kv-heads instead of query heads") {
    f.expect_rejected([&] { f.c.compress(0, {q.data(), 1, 2, 3}); }, "window.num_heads", {"expected 4", "got 2"});
  }
  SUBCASE("head_dim") {
    f.expect_rejected([&] { f.c.compress(1, {q.data(), 1, 4, 2}); }, "window.head_dim", {"expected 3", "got 2"});
  }
  SUBCASE("more queries than max_window") {
    f.expect_rejected([&] { f.c.compress(0, {q.data(), 3, 4, 3}); }, "window.num_tokens",
                      {"shape.max_window = 2", "got 3"});
  }
}

TEST_CASE("bad shapes are refused at construction and allocate nothing") {
  host::counting_resource counted;
  using comp = host::compressor<float, layouts::hnd, scorers::key_diff, budgets::fixed_tokens>;
  auto expect = [&](host::compressor_shape s, const std::string& argument, const std::string& in_message) {
    try {
      comp c(s, {.budget = {4}}, &counted);
      FAIL("constructed with a bad ", argument);
    } catch (const error& e) {
      CHECK(e.argument() == argument);
      CHECK_MESSAGE(std::string(e.what()).find(in_message) != std::string::npos, e.what());
    }
    CHECK(counted.allocations() == 0);
  };
  const host::compressor_shape good{.num_layers = 2, .num_kv_heads = 2, .num_q_heads = 6, .head_dim = 8, .max_chunk = 4};
  auto with = [&](auto change) {
    auto s = good;
    change(s);
    return s;
  };
  expect(with([](auto& s) { s.num_layers = 0; }), "shape.num_layers", "> 0");
  expect(with([](auto& s) { s.num_kv_heads = 0; }), "shape.num_kv_heads", "> 0");
  expect(with([](auto& s) { s.head_dim = 0; }), "shape.head_dim", "> 0");
  expect(with([](auto& s) { s.max_chunk = 0; }), "shape.max_chunk", "> 0");
  expect(with([](auto& s) { s.num_q_heads = 5; }), "shape.num_q_heads", "multiple of num_kv_heads (2)");
  try {
    comp c(good, {.budget = {4}}, nullptr);
    FAIL("constructed without a resource");
  } catch (const error& e) {
    CHECK(e.argument() == "resource");
  }
  comp fine(good, {.budget = {4}}, &counted);
  CHECK(counted.allocations() == 2 * 3 + 1);  // K, V, meta per layer + one workspace
}

TEST_CASE("a head-adaptive floor fraction outside [0, 1] is refused at construction, allocating nothing") {
  host::counting_resource counted;
  using comp = host::compressor<float, layouts::varlen, scorers::key_norm, budgets::head_adaptive>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 2, .max_chunk = 4};
  for (const double fraction : {-0.5, 1.5, std::numeric_limits<double>::quiet_NaN(),
                                std::numeric_limits<double>::infinity()}) {
    CAPTURE(fraction);
    try {
      comp c(shape, {.budget = {.tokens = 4, .min_head_fraction = fraction}}, &counted);
      FAIL("constructed with min_head_fraction ", fraction);
    } catch (const error& e) {
      CHECK(e.argument() == "budget.min_head_fraction");
      CHECK(e.expected() == "a finite fraction in [0, 1]");
    }
  }
  CHECK(counted.allocations() == 0);
  const comp none(shape, {.budget = {.tokens = 4, .min_head_fraction = 0.0}}, &counted);
  const comp all(shape, {.budget = {.tokens = 4, .min_head_fraction = 1.0}}, &counted);
  CHECK(all.policy().budget.head_floor(4) == 4);
  CHECK(all.policy().budget.head_floor(3) == 3);  // the floor is a share of the target, not of the construction budget
  CHECK(none.policy().budget.head_floor(4) == 0);
}

TEST_CASE_TEMPLATE("a paged engine view that does not address its pool is refused, writing and allocating nothing",
                   Layout, layouts::paged_nhd, layouts::paged_hnd) {
  // 2 heads, dim 3, budget 5 + max_chunk 3 = capacity 8: pages of 4, 2 logical pages, a pool
  // of 3 pages, block table {2, 0}.
  using comp = host::compressor<float, Layout, scorers::key_norm, budgets::fixed_tokens>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 3, .max_chunk = 3};
  std::vector<std::int32_t> table = {2, 0};
  typename Layout::mapping good{.capacity = 8, .num_heads = 2, .head_dim = 3};
  good.page_size = 4, good.num_pages = 3, good.block_table = table.data();
  std::vector<float> k(static_cast<std::size_t>(good.required_span_size())), v(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i), v[i] = -static_cast<float>(i);
  std::vector<token_meta> meta(8 * 2);
  for (std::size_t i = 0; i < meta.size(); ++i) meta[i].index = static_cast<std::int64_t>(100 + i);
  const auto k0 = k, v0 = v;
  const auto meta0 = meta;
  host::counting_resource counted;
  auto expect = [&](auto spoil, const std::string& argument, const std::string& in_message) {
    auto m = good;
    spoil(m);
    const layer_view<float, Layout> view{k.data(), v.data(), meta.data(), m, 0};
    try {
      comp c(shape, {.budget = {5}}, std::span<const layer_view<float, Layout>>(&view, 1), &counted);
      FAIL("constructed over a bad ", argument);
    } catch (const error& e) {
      CHECK(e.argument() == argument);
      CHECK_MESSAGE(std::string(e.what()).find(in_message) != std::string::npos, e.what());
    }
    CHECK(counted.allocations() == 0);
    CHECK(k == k0);
    CHECK(v == v0);
    CHECK(meta == meta0);
  };
  expect([](auto& m) { m.page_size = 0; }, "engine_layers[layer].mapping.page_size", "> 0, got 0");
  expect([](auto& m) { m.page_size = -4; }, "engine_layers[layer].mapping.page_size", "got -4");
  expect([](auto& m) { m.num_pages = -1; }, "engine_layers[layer].mapping.num_pages", ">= 0");
  expect([](auto& m) { m.block_table = nullptr, m.num_pages = 1; }, "engine_layers[layer].mapping.num_pages",
         ">= the logical pages of the capacity = 2");
  table = {2, 3};
  expect([](auto&) {}, "engine_layers[layer].mapping.block_table[]", "in [0, 3), at logical page 1, got 3");
  table = {-1, 0};
  expect([](auto&) {}, "engine_layers[layer].mapping.block_table[]", "at logical page 0, got -1");
  table = {2, 0};
  expect([](auto& m) { m.num_pages = 0; }, "engine_layers[layer].mapping.block_table[]",
         "in [0, 2), at logical page 0, got 2");  // num_pages 0: the pool is the 2 logical pages
  // The valid view: its first logical page is pool page 2, its second pool page 0.
  const layer_view<float, Layout> view{k.data(), v.data(), meta.data(), good, 0};
  comp c(shape, {.budget = {5}}, std::span<const layer_view<float, Layout>>(&view, 1), &counted);
  const structures::sequence text{.length = 100};
  std::vector<float> chunk(8 * 2 * 3, 1.f);
  std::vector<token_meta> chunk_meta;
  for (index_t t = 0; t < 8; ++t) chunk_meta.push_back(text.meta(t));
  CHECK(counted.allocations() == 1);  // the workspace
  c.append(0, {chunk.data(), 8, 2, 3}, {chunk.data(), 8, 2, 3}, chunk_meta);
  CHECK(c.layer(0).mapping(0, 0) >= 2 * good.page_elements());
  CHECK(c.layer(0).mapping(4, 1) < good.page_elements());
  CHECK(k[static_cast<std::size_t>(c.layer(0).mapping(4, 1))] == 1.f);
  c.compress(0);
  CHECK(c.length(0) == 5);
}

TEST_CASE("grid metadata that contradicts the logical index is refused") {
  // The neighbour lookups of the structure scorers and the merge reducer read the index
  // alone, so frame, row, col, segment and kind must be what the structure says of it.
  SUBCASE("spatial_grid 4 x 4 declared raster, fed tile-major (2 x 2 tiles)") {
    fixture<float, structures::spatial_grid> f(structures::spatial_grid{.rows = 4, .cols = 4});
    auto ch = f.valid_chunk(3);  // tokens 8..10: raster (2, 0) (2, 1) (2, 2); tile-major (2, 0) (2, 1) (3, 0)
    const structures::spatial_grid tiled{.rows = 4, .cols = 4, .tile_rows = 2, .tile_cols = 2};
    for (index_t t = 0; t < 3; ++t) ch.meta[t] = tiled.meta(8 + t);
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); }, "meta[].row",
                      {"== 2 (declared structure) at token 2", "got 3"});
  }
  SUBCASE("spatial_grid: an index past the grid, a kind that is not an image") {
    fixture<float, structures::spatial_grid> f(structures::spatial_grid{.rows = 4, .cols = 4});
    auto ch = f.valid_chunk(3);
    auto append = [&] { f.c.append(1, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
    SUBCASE("index") {
      ch.meta[2].index = 16;
      f.expect_rejected(append, "meta[].index", {"< 16", "at token 2", "got 16"});
    }
    SUBCASE("kind") {
      ch.meta[0].kind = segment_kind::video;
      f.expect_rejected(append, "meta[].kind", {"== 1", "got 2"});
    }
  }
  SUBCASE("temporal_frames 3 x 2 x 4: a frame inside the video but not this token's") {
    fixture<float, structures::temporal_frames> f(structures::temporal_frames{.frames = 3, .rows = 2, .cols = 4});
    auto ch = f.valid_chunk(3);  // tokens 8..10: frame 1
    ch.meta[1].frame = 2;
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); },
                      "meta[].frame", {"== 1", "got 2"});
  }
  SUBCASE("mixed with an empty last segment: an index past the prompt, a segment of another token") {
    static const structures::segment segs[] = {structures::segment::text(4), structures::segment::image(4, 4),
                                               structures::segment::text(0)};  // 20 tokens
    fixture<float, structures::mixed> f(structures::mixed{segs});
    auto ch = f.valid_chunk(3);  // tokens 8..10: image tokens (segment 1)
    auto append = [&] { f.c.append(0, {ch.k.data(), 3, 2, 3}, {ch.v.data(), 3, 2, 3}, ch.meta); };
    SUBCASE("index") {
      ch.meta[2].index = 100;
      f.expect_rejected(append, "meta[].index", {"< 20", "got 100"});
    }
    SUBCASE("segment") {
      ch.meta[0].segment = 0, ch.meta[0].kind = segment_kind::text;
      f.expect_rejected(append, "meta[].segment", {"== 1", "at token 0", "got 0"});
    }
    SUBCASE("col") {
      ch.meta[1].col = 3;  // token 9 is (1, 1)
      f.expect_rejected(append, "meta[].col", {"== 1", "got 3"});
    }
  }
  SUBCASE("mixed: a text token with grid coordinates") {
    static const structures::segment segs[] = {structures::segment::text(20)};
    fixture<float, structures::mixed> f(structures::mixed{segs});
    auto ch = f.valid_chunk(1);
    ch.meta[0].row = 1;
    f.expect_rejected([&] { f.c.append(0, {ch.k.data(), 1, 2, 3}, {ch.v.data(), 1, 2, 3}, ch.meta); }, "meta[].row",
                      {"== 0", "got 1"});
  }
}

TEST_CASE("a grid whose tiles do not divide it, or that has no extent, is refused at construction") {
  host::counting_resource counted;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = 4};
  auto expect = [&]<class Structure>(Structure s, const std::string& argument, const std::string& in_message) {
    using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens, reducers::evict,
                                  Structure>;
    try {
      comp c(shape, {.budget = {4}, .structure = s}, &counted);
      FAIL("constructed with ", in_message);
    } catch (const error& e) {
      CHECK(e.argument() == argument);
      CHECK_MESSAGE(std::string(e.what()).find(in_message) != std::string::npos, e.what());
    }
    CHECK(counted.allocations() == 0);
  };
  using structures::segment;
  using structures::spatial_grid;
  expect(spatial_grid{.rows = 3, .cols = 4, .tile_rows = 2, .tile_cols = 2}, "structure",
         "tile_rows > 0 dividing rows = 3, got 2");
  expect(spatial_grid{.rows = 4, .cols = 6, .tile_rows = 2, .tile_cols = 4}, "structure",
         "tile_cols > 0 dividing cols = 6, got 4");
  expect(spatial_grid{.rows = 4, .cols = 4, .tile_rows = 2}, "structure", "tile_cols > 0");
  expect(spatial_grid{.rows = 0, .cols = 4}, "structure", "rows in [1, 32767], got 0");
  expect(spatial_grid{.rows = 4, .cols = 40000}, "structure", "cols in [1, 32767], got 40000");
  expect(structures::temporal_frames{.frames = 0, .rows = 2, .cols = 2}, "structure", "frames in [1, 2^31), got 0");
  static const segment bad_tiles[] = {segment::text(4), segment::image(3, 4, 2, 2)};
  expect(structures::mixed{bad_tiles}, "structure.segments[]", "dividing rows = 3");
  static const segment negative[] = {segment::text(-1)};
  expect(structures::mixed{negative}, "structure.segments[]", "cols in [0, 32767], got -1");
  // Empty segments are allowed in a mixed prompt (a question not known yet).
  static const segment fine[] = {segment::text(4), segment::image(4, 6, 2, 3), segment::text(0)};
  using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens, reducers::evict,
                                structures::mixed>;
  const comp c(shape, {.budget = {4}, .structure = structures::mixed{fine}}, &counted);
}

TEST_CASE("sizes that do not fit in 64-bit index arithmetic are refused at construction") {
  host::counting_resource counted;
  auto expect = [&]<class Scorer, class Budget>(Scorer, host::compressor_shape s, Budget b,
                                                 const std::string& argument,
                                                 const std::string& expected = "sizes that fit in 64-bit index arithmetic") {
    using comp = host::compressor<float, layouts::nhd, Scorer, Budget>;
    try {
      comp c(s, {.budget = b}, &counted);
      FAIL("constructed with ", argument, " out of range");
    } catch (const error& e) {
      CHECK(e.argument() == argument);
      CHECK(e.expected() == expected);
    }
    CHECK(counted.allocations() == 0);
  };
  constexpr index_t most = std::numeric_limits<index_t>::max();
  const host::compressor_shape s{.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 4, .max_chunk = 8};
  auto with = [&](auto change) {
    auto t = s;
    change(t);
    return t;
  };
  expect(scorers::key_norm{}, s, budgets::fixed_tokens{most}, "budget");            // budget + max_chunk
  expect(scorers::key_norm{}, s, budgets::fixed_tokens{index_t{1} << 58}, "budget");  // its bytes
  const auto wide = with([](auto& t) { t.num_kv_heads = t.num_q_heads = index_t{1} << 32, t.head_dim = index_t{1} << 30; });
  expect(scorers::key_norm{}, wide, budgets::fixed_tokens{8}, "shape.head_dim");  // the bytes of one token
  expect(scorers::key_norm{}, wide, budgets::fixed_bytes{1 << 20}, "shape.head_dim");  // before the budget divides
  expect(scorers::observation_window{}, with([](auto& t) { t.max_window = index_t{1} << 61; }),
         budgets::fixed_tokens{8}, "workspace bytes (shape, budget)", "a size that fits in std::size_t");  // the carve's rows × dim
}
