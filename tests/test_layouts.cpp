// Cache layouts: the NHD and HND mappings, chunk tensors in either order, Eigen views, and
// the guarantee that the layout never changes what is kept: an HND and an NHD cache fed
// the same chunks hold the same tokens with the same K/V bytes in every slot. The
// non-owning compressor (engine storage) behaves exactly like the owning one.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "test_seed.hpp"

namespace {

using namespace kvcap;

template <class T>
std::vector<T> random_values(std::mt19937_64& rng, std::size_t count, bool ties) {
  std::vector<T> out(count);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::uniform_int_distribution<int> small(-1, 1);
  for (auto& x : out) x = T(ties ? static_cast<float>(small(rng)) : u(rng));
  return out;
}

/// Feeds the same random chunks to an NHD and an HND compressor and checks, after every
/// append and compress, that both hold the same tokens and bytes in every slot.
template <class T, class Scorer>
void check_layouts_agree(std::uint64_t seed, Scorer scorer, bool ties) {
  std::mt19937_64 rng(kvcap_test::shifted(seed));
  const index_t layers = 2, heads = 3, dim = 5, budget = 7, max_chunk = 6;
  const host::compressor_shape shape{.num_layers = layers, .num_kv_heads = heads, .num_q_heads = heads * 2,
                               .head_dim = dim, .max_chunk = max_chunk};
  host::compressor<T, layouts::nhd, Scorer, budgets::fixed_tokens> nhd(shape, {.scorer = scorer, .budget = {budget}});
  host::compressor<T, layouts::hnd, Scorer, budgets::fixed_tokens> hnd(shape, {.scorer = scorer, .budget = {budget}});
  std::int64_t next = 0;
  for (int chunk = 0; chunk < 12; ++chunk) {
    const index_t n = std::uniform_int_distribution<index_t>(0, max_chunk)(rng);
    std::vector<token_meta> meta(static_cast<std::size_t>(n));
    for (auto& m : meta) {
      m.index = next, m.position = {static_cast<std::int32_t>(next), 1, 2};
      m.is_protected = next % 11 == 3;  // a few protected tokens
      ++next;
    }
    for (index_t layer = 0; layer < layers; ++layer) {
      const auto k = random_values<T>(rng, static_cast<std::size_t>(n * heads * dim), ties);
      const auto v = random_values<T>(rng, k.size(), ties);
      // The chunk arrives in NHD order for one cache and, transposed, in HND order for the other.
      std::vector<T> k_hnd(k.size()), v_hnd(v.size());
      for (index_t tok = 0; tok < n; ++tok)
        for (index_t head = 0; head < heads; ++head)
          for (index_t i = 0; i < dim; ++i) {
            k_hnd[(head * n + tok) * dim + i] = k[(tok * heads + head) * dim + i];
            v_hnd[(head * n + tok) * dim + i] = v[(tok * heads + head) * dim + i];
          }
      nhd.append(layer, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
      hnd.append(layer, {k_hnd.data(), n, heads, dim, kv_layout::hnd}, {v_hnd.data(), n, heads, dim, kv_layout::hnd},
                 meta);
      for (int step = 0; step < 2; ++step) {
        const auto& a = nhd.layer(layer);
        const auto& b = hnd.layer(layer);
        REQUIRE(a.length == b.length);
        for (index_t head = 0; head < heads; ++head)
          for (index_t slot = 0; slot < a.length; ++slot) {
            CHECK(a.meta_at(slot, head) == b.meta_at(slot, head));
            CHECK(std::memcmp(a.k + a.mapping(slot, head), b.k + b.mapping(slot, head), dim * sizeof(T)) == 0);
            CHECK(std::memcmp(a.v + a.mapping(slot, head), b.v + b.mapping(slot, head), dim * sizeof(T)) == 0);
          }
        if (step == 0) nhd.compress(layer), hnd.compress(layer);
      }
      CHECK(nhd.length(layer) <= budget);
    }
  }
}

}  // namespace

TEST_CASE("nhd mapping: (tok, head) -> (tok * heads + head) * dim") {
  const auto m = make_mapping<layouts::nhd>(10, 3, 4);
  CHECK(m(0, 0) == 0);
  CHECK(m(0, 1) == 4);
  CHECK(m(1, 0) == 12);
  CHECK(m(2, 2) == (2 * 3 + 2) * 4);
  CHECK(m.token_stride() == 12);
  CHECK(m.required_span_size() == 120);
}

TEST_CASE("hnd mapping: (tok, head) -> (head * capacity + tok) * dim") {
  const auto m = make_mapping<layouts::hnd>(10, 3, 4);
  CHECK(m(0, 0) == 0);
  CHECK(m(1, 0) == 4);
  CHECK(m(0, 1) == 40);
  CHECK(m(2, 2) == (2 * 10 + 2) * 4);
  CHECK(m.token_stride() == 4);
  CHECK(m.required_span_size() == 120);
}

// The paged and per-head layouts address memory the engine laid out, so their offsets are
// checked against the engines' own shapes, as C++ arrays index them: a mapping that permutes
// slots consistently would pass every round trip through kvcap and still read the wrong rows
// of a vLLM or FlashInfer cache.
TEST_CASE("paged_nhd mapping: vLLM's [num_blocks, block_size, kv_heads, head_size] through the block table") {
  static float pool[5][4][3][2];  // 5 pages of 4 tokens, 3 kv-heads, dim 2
  const auto at = [&](int block, int row, int head) { return &pool[block][row][head][0] - &pool[0][0][0][0]; };
  const std::int32_t table[] = {3, 0, 4};  // logical page -> physical page
  const layouts::paged_nhd::mapping m{.capacity = 10, .num_heads = 3, .head_dim = 2, .page_size = 4,
                                      .block_table = table, .num_pages = 5};
  CHECK(m(0, 0) == at(3, 0, 0));
  CHECK(m(0, 0) == 72);
  CHECK(m(5, 2) == at(0, 1, 2));
  CHECK(m(5, 2) == 10);
  CHECK(m(9, 1) == at(4, 1, 1));
  CHECK(m(9, 1) == 104);
  for (int tok = 0; tok < 10; ++tok)
    for (int head = 0; head < 3; ++head) CHECK(m(tok, head) == at(table[tok / 4], tok % 4, head));
  CHECK(m.token_stride() == 3 * 2);
  CHECK(m.required_span_size() == 5 * 4 * 3 * 2);
  // Without a block table, logical page p is physical page p.
  const layouts::paged_nhd::mapping identity{.capacity = 10, .num_heads = 3, .head_dim = 2, .page_size = 4};
  CHECK(identity(9, 1) == at(2, 1, 1));
  CHECK(identity.required_span_size() == 3 * 4 * 3 * 2);
}

TEST_CASE("paged_hnd mapping: FlashInfer's kHND pages [num_pages, kv_heads, page_size, head_dim]") {
  static float pool[5][3][4][2];  // 5 pages, 3 kv-heads, 4 tokens a page, dim 2
  const auto at = [&](int page, int head, int row) { return &pool[page][head][row][0] - &pool[0][0][0][0]; };
  const std::int32_t table[] = {3, 0, 4};
  const layouts::paged_hnd::mapping m{.capacity = 10, .num_heads = 3, .head_dim = 2, .page_size = 4,
                                      .block_table = table, .num_pages = 5};
  CHECK(m(0, 0) == at(3, 0, 0));
  CHECK(m(5, 2) == at(0, 2, 1));
  CHECK(m(5, 2) == 18);
  CHECK(m(9, 1) == at(4, 1, 1));
  CHECK(m(9, 1) == 106);
  for (int tok = 0; tok < 10; ++tok)
    for (int head = 0; head < 3; ++head) CHECK(m(tok, head) == at(table[tok / 4], head, tok % 4));
  CHECK(m.token_stride() == 2);
  CHECK(m.required_span_size() == 5 * 3 * 4 * 2);
}

TEST_CASE("varlen mapping: head h's token t at slot head_indptr[h] + t, metadata (head, capacity) unless packed") {
  // Heads of 5, 2 and 5 slots packed back to back (FlashInfer's indptr convention, over heads).
  const index_t indptr[] = {0, 5, 7, 12};
  layouts::varlen::mapping m{.capacity = 5, .num_heads = 3, .head_dim = 2, .head_indptr = indptr, .num_slots = 12};
  CHECK(m(0, 0) == 0);
  CHECK(m(1, 1) == (5 + 1) * 2);
  CHECK(m(2, 2) == (7 + 2) * 2);
  CHECK(m.room(0) == 5);
  CHECK(m.room(1) == 2);
  CHECK(m.room(2) == 5);
  CHECK(m.token_stride() == 2);
  CHECK(m.required_span_size() == 12 * 2);
  // Metadata keeps every layout's (head, capacity) records by default, or follows K and V.
  CHECK(m.meta_slot(1, 1) == 1 * 5 + 1);
  CHECK(m.meta_slot(2, 2) == 2 * 5 + 2);
  m.packed_meta = true;
  CHECK(m.meta_slot(1, 1) == 5 + 1);
  CHECK(m.meta_slot(2, 2) == 7 + 2);
  // Without head_indptr, every head has `capacity` slots: the HND layout.
  const layouts::varlen::mapping plain{.capacity = 5, .num_heads = 3, .head_dim = 2};
  const auto hnd = make_mapping<layouts::hnd>(5, 3, 2);
  for (index_t tok = 0; tok < 5; ++tok)
    for (index_t head = 0; head < 3; ++head) {
      CHECK(plain(tok, head) == hnd(tok, head));
      CHECK(plain.meta_slot(tok, head) == head * 5 + tok);
    }
  CHECK(plain.room(1) == 5);
  CHECK(plain.required_span_size() == hnd.required_span_size());
}

TEST_CASE("kv_tensor offsets in both orders") {
  const kv_tensor<const float> nhd{nullptr, 5, 2, 3, kv_layout::nhd};
  const kv_tensor<const float> hnd{nullptr, 5, 2, 3, kv_layout::hnd};
  CHECK(nhd.offset(4, 1) == (4 * 2 + 1) * 3);
  CHECK(hnd.offset(4, 1) == (1 * 5 + 4) * 3);
  CHECK(nhd.size() == 30);
  CHECK(to_string(kv_layout::nhd) == std::string("nhd"));
  CHECK(to_string(kv_layout::hnd) == std::string("hnd"));
}

TEST_CASE_TEMPLATE("an HND and an NHD cache keep the same tokens and bytes", T, float, Eigen::half, Eigen::bfloat16) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    const bool ties = seed % 2 == 0;
    check_layouts_agree<T>(seed, scorers::key_norm{}, ties);
    check_layouts_agree<T>(seed, scorers::value_norm{}, ties);
    check_layouts_agree<T>(seed, scorers::recency{.num_sinks = 2}, ties);
    check_layouts_agree<T>(seed, scorers::key_diff{}, ties);
  }
}

TEST_CASE("Eigen head views read the layout's slots") {
  host::compressor<float, layouts::hnd, scorers::key_norm, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 3, .max_chunk = 4}, {.budget = {8}});
  // k(tok, head, i) = 100 tok + 10 head + i; v = -k.
  std::vector<float> k(4 * 2 * 3), v(k.size());
  for (int tok = 0; tok < 4; ++tok)
    for (int head = 0; head < 2; ++head)
      for (int i = 0; i < 3; ++i) {
        k[(tok * 2 + head) * 3 + i] = static_cast<float>(100 * tok + 10 * head + i);
        v[(tok * 2 + head) * 3 + i] = -static_cast<float>(100 * tok + 10 * head + i);
      }
  std::vector<token_meta> meta(4);
  for (int i = 0; i < 4; ++i) meta[i].index = i;
  c.append(0, {k.data(), 4, 2, 3}, {v.data(), 4, 2, 3}, meta);
  const auto keys = host::head_rows(c.layer(0), 1);
  const auto values = host::head_rows(c.layer(0), 1, true);
  REQUIRE(keys.rows() == 4);
  REQUIRE(keys.cols() == 3);
  CHECK(keys(2, 1) == 211.f);
  CHECK(keys(3, 0) == 310.f);
  CHECK(values(1, 2) == -112.f);
  // A chunk tensor in HND order, viewed per head.
  std::vector<float> hnd_chunk(2 * 2 * 3);
  for (int i = 0; i < 12; ++i) hnd_chunk[i] = static_cast<float>(i);
  const kv_tensor<const float> t{hnd_chunk.data(), 2, 2, 3, kv_layout::hnd};
  const auto rows = host::head_rows(t, 1);  // head 1 starts at element (1 * 2 + 0) * 3 = 6
  CHECK(rows(0, 0) == 6.f);
  CHECK(rows(1, 2) == 11.f);
}

TEST_CASE_TEMPLATE("a compressor over engine storage matches the owning one", Layout, layouts::nhd, layouts::hnd) {
  using T = Eigen::half;
  const index_t heads = 2, dim = 4, budget = 5, max_chunk = 3, capacity = budget + max_chunk;
  const host::compressor_shape shape{.num_layers = 2, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim,
                               .max_chunk = max_chunk};
  // The engine's buffers for two layers.
  const auto mapping = make_mapping<Layout>(capacity, heads, dim);
  std::vector<T> engine_k(2 * mapping.required_span_size()), engine_v(engine_k.size());
  std::vector<token_meta> engine_meta(static_cast<std::size_t>(2 * capacity * heads));
  const layer_view<T, Layout> views[2] = {
      {engine_k.data(), engine_v.data(), engine_meta.data(), mapping, 0},
      {engine_k.data() + mapping.required_span_size(), engine_v.data() + mapping.required_span_size(),
       engine_meta.data() + capacity * heads, mapping, 0}};
  host::counting_resource owned_bytes, view_bytes;
  using comp = host::compressor<T, Layout, scorers::key_diff, budgets::fixed_tokens>;
  comp owning(shape, {.budget = {budget}}, &owned_bytes);
  comp borrowed(shape, {.budget = {budget}}, std::span<const layer_view<T, Layout>>(views), &view_bytes);
  // The non-owning compressor allocates its workspace only; storage is the engine's.
  CHECK(view_bytes.current_bytes() == comp::workspace_bytes(shape, capacity));
  CHECK(owned_bytes.current_bytes() == comp::workspace_bytes(shape, capacity) + 2 * capacity * comp::slot_bytes(shape));
  CHECK(borrowed.layer(1).k == views[1].k);
  CHECK(borrowed.layer(0).meta == engine_meta.data());

  std::mt19937_64 rng(42);
  std::int64_t next = 0;
  for (int chunk = 0; chunk < 9; ++chunk) {
    const index_t n = chunk % 4 == 3 ? 0 : max_chunk - chunk % 3;
    std::vector<token_meta> meta(static_cast<std::size_t>(n));
    for (auto& m : meta) m.index = next++;
    for (index_t layer = 0; layer < 2; ++layer) {
      const auto k = random_values<T>(rng, static_cast<std::size_t>(n * heads * dim), chunk % 2 == 0);
      const auto v = random_values<T>(rng, k.size(), false);
      owning.append(layer, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
      borrowed.append(layer, {k.data(), n, heads, dim}, {v.data(), n, heads, dim}, meta);
      owning.compress(layer);
      borrowed.compress(layer);
      const auto& a = owning.layer(layer);
      const auto& b = borrowed.layer(layer);
      REQUIRE(a.length == b.length);
      for (index_t head = 0; head < heads; ++head)
        for (index_t slot = 0; slot < a.length; ++slot) {
          CHECK(a.meta_at(slot, head) == b.meta_at(slot, head));
          CHECK(std::memcmp(a.k + a.mapping(slot, head), b.k + b.mapping(slot, head), dim * sizeof(T)) == 0);
          CHECK(std::memcmp(a.v + a.mapping(slot, head), b.v + b.mapping(slot, head), dim * sizeof(T)) == 0);
        }
    }
  }
  CHECK(borrowed.length(0) == budget);
}

TEST_CASE("engine storage larger than budget + max_chunk does not raise the per-append limit") {
  // The engine hands a 64-slot buffer to a compressor declared with budget 4 and
  // max_chunk 2. Its workspace is sized for 4 + 2 tokens, so at budget an append of 3
  // tokens must be refused exactly as with owned storage (6 - 4 = 2 tokens of room),
  // never accepted because the engine's buffer happens to be larger.
  const index_t capacity = 64, heads = 1, dim = 2;
  const auto mapping = make_mapping<layouts::nhd>(capacity, heads, dim);
  std::vector<float> k_store(mapping.required_span_size()), v_store(k_store.size());
  std::vector<token_meta> meta_store(static_cast<std::size_t>(capacity));
  const layer_view<float, layouts::nhd> view{k_store.data(), v_store.data(), meta_store.data(), mapping, 0};
  host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim, .max_chunk = 2},
      {.budget = {4}}, std::span(&view, 1));
  std::vector<float> k(2 * 64, 1.f);
  std::vector<token_meta> meta(64);
  for (int i = 0; i < 64; ++i) meta[i].index = i;
  c.append(0, {k.data(), 6, 1, 2}, {k.data(), 6, 1, 2}, std::span(meta).first(6));
  c.compress(0);
  REQUIRE(c.length(0) == 4);
  try {
    c.append(0, {k.data(), 3, 1, 2}, {k.data(), 3, 1, 2}, std::span(meta).subspan(6, 3));
    FAIL("an append beyond budget + max_chunk was accepted; length is now ", c.length(0));
  } catch (const error& e) {
    CHECK(e.argument() == "k.num_tokens");
    CHECK(std::string(e.what()).find("= 2 ") != std::string::npos);
  }
  CHECK(c.length(0) == 4);
  // Exactly max_chunk still fits.
  c.append(0, {k.data(), 2, 1, 2}, {k.data(), 2, 1, 2}, std::span(meta).subspan(6, 2));
  CHECK(c.length(0) == 6);
}

TEST_CASE("engine storage smaller than budget + max_chunk is refused") {
  const auto mapping = make_mapping<layouts::hnd>(5, 1, 2);
  std::vector<float> store(mapping.required_span_size());
  std::vector<token_meta> meta_store(5);
  const layer_view<float, layouts::hnd> view{store.data(), store.data(), meta_store.data(), mapping, 0};
  using comp = host::compressor<float, layouts::hnd, scorers::key_norm, budgets::fixed_tokens>;
  try {
    comp c({.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 2, .max_chunk = 2}, {.budget = {4}},
           std::span(&view, 1));
    FAIL("accepted a 5-slot engine buffer for budget 4 + max_chunk 2");
  } catch (const error& e) {
    CHECK(e.argument() == "engine_layers[layer].mapping.capacity");
    CHECK(e.expected().find("6") != std::string::npos);
    CHECK(e.received() == "5");
  }
}
