// Peak memory accounting: the bytes that pass through a counting std::pmr resource during
// a whole prefill equal, to the byte, a formula written here independently of the library:
//
//   peak = sum over layers of (budget + max_chunk) * kv_heads * (2 * head_dim * sizeof(T) + sizeof(token_meta))
//        + workspace
//   workspace = align256(cap * 4)   scores (float per token)
//             + align256(cap * 4)   order (int32 per token)
//             + align256(cap * 1)   keep flags (byte per token)
//             + align256(head_dim * 4)  mean unit key (float per dim)
//   cap = max over layers of budget + max_chunk
//
// (single scorers without a window: composite and window scorers carve more, and a
// head-adaptive budget sizes them for its longest head; see the last test case). The peak is
// flat in the input length, while a full cache (budget = the whole input) grows linearly.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace kvcap;

constexpr std::size_t align256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

struct dims {
  index_t layers, heads, q_heads, dim, max_chunk;
};

template <class T>
std::size_t formula_storage(const dims& d, index_t budget) {
  const auto cap = static_cast<std::size_t>(budget + d.max_chunk);
  return static_cast<std::size_t>(d.layers) * cap * static_cast<std::size_t>(d.heads) *
         (2 * static_cast<std::size_t>(d.dim) * sizeof(T) + sizeof(token_meta));
}
std::size_t formula_workspace(const dims& d, index_t budget) {
  const auto cap = static_cast<std::size_t>(budget + d.max_chunk);
  return align256(cap * 4) + align256(cap * 4) + align256(cap * 1) + align256(static_cast<std::size_t>(d.dim) * 4);
}
template <class T>
std::size_t formula_peak(const dims& d, index_t budget) {
  return formula_storage<T>(d, budget) + formula_workspace(d, budget);
}

/// Runs a whole prefill of `input` tokens in chunks of max_chunk through a compressor whose
/// storage and workspace come from a fresh counting resource; returns that resource's peak.
template <class T, class Layout, class Scorer, class Budget>
std::size_t measured_peak(const dims& d, Budget budget, index_t input, std::size_t* storage = nullptr,
                          std::size_t* workspace = nullptr) {
  host::counting_resource counted;
  {
    host::compressor<T, Layout, Scorer, Budget> c(
        {.num_layers = d.layers, .num_kv_heads = d.heads, .num_q_heads = d.q_heads, .head_dim = d.dim,
         .max_chunk = d.max_chunk},
        {.budget = budget}, &counted);
    if (storage) *storage = c.memory().storage_bytes;
    if (workspace) *workspace = c.memory().workspace_bytes;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<T> k(static_cast<std::size_t>(d.max_chunk * d.heads * d.dim)), v(k.size());
    std::vector<token_meta> meta(static_cast<std::size_t>(d.max_chunk));
    for (index_t begin = 0; begin < input; begin += d.max_chunk) {
      const index_t n = std::min(d.max_chunk, input - begin);
      for (index_t tok = 0; tok < n; ++tok) meta[tok] = structures::sequence{.length = input}.meta(begin + tok);
      for (index_t layer = 0; layer < d.layers; ++layer) {
        for (auto& x : k) x = T(u(rng));
        for (auto& x : v) x = T(u(rng));
        c.append(layer, {k.data(), n, d.heads, d.dim}, {v.data(), n, d.heads, d.dim}, std::span(meta).first(n));
        c.compress(layer);
      }
    }
    CHECK(c.logical_length(0) == input);
    CHECK(counted.current_bytes() == counted.peak_bytes());  // everything allocated up front
  }
  CHECK(counted.current_bytes() == 0);  // and all of it returned
  return counted.peak_bytes();
}

}  // namespace

TEST_CASE("the workspace and storage formulas, by hand, for one shape") {
  // float, 2 layers, 2 heads, dim 16, budget 64, max_chunk 32: cap 96.
  //   slot bytes = 2 * (2 * 16 * 4 + 40) = 336; storage = 2 * 96 * 336 = 64512
  //   workspace = align256(384) + align256(384) + align256(96) + align256(64) = 512 + 512 + 256 + 256 = 1536
  const dims d{2, 2, 2, 16, 32};
  CHECK(formula_storage<float>(d, 64) == 64512);
  CHECK(formula_workspace(d, 64) == 1536);
  std::size_t storage = 0, workspace = 0;
  CHECK(measured_peak<float, layouts::nhd, scorers::key_norm>(d, budgets::fixed_tokens{64}, 500, &storage,
                                                              &workspace) == 64512 + 1536);
  CHECK(storage == 64512);
  CHECK(workspace == 1536);
  using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens>;
  const host::compressor_shape shape{.num_layers = 2, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 16, .max_chunk = 32};
  CHECK(comp::workspace_bytes(shape, 96) == 1536);
  CHECK(comp::slot_bytes(shape) == 336);
}

TEST_CASE("workspace_carver: 256-byte offsets, one carve for the size and the pointers, overflow refused") {
  // 12 B → 256, 257 B → 512, 0 B → 0: 768 B, with each pointer at the size query's offset.
  workspace_carver size;
  CHECK(size.take<float>(3) == nullptr);
  CHECK(size.take<std::uint8_t>(257) == nullptr);
  CHECK(size.take<double>(0) == nullptr);
  CHECK(size.bytes() == 768);
  CHECK(!size.overflowed());
  std::vector<std::byte> buffer(768);
  workspace_carver real(buffer.data());
  CHECK(static_cast<void*>(real.take<float>(3)) == buffer.data());
  CHECK(static_cast<void*>(real.take<std::uint8_t>(257)) == buffer.data() + 256);
  CHECK(static_cast<void*>(real.take<double>(0)) == buffer.data() + 768);
  CHECK(real.bytes() == size.bytes());

  // The last byte that fits: 2^63 B, then 2^63 − 256, ends at 2^64 − 256; one more byte would
  // round up past std::size_t. The overflow is remembered, the size left as it was.
  constexpr std::size_t half = std::size_t{1} << 63;
  workspace_carver edge;
  edge.take<std::byte>(std::numeric_limits<index_t>::max());  // 2^63 − 1 → 2^63
  edge.take<std::byte>(static_cast<index_t>(half - 256));
  CHECK(!edge.overflowed());
  CHECK(edge.bytes() == ~std::size_t{0} - 255);
  edge.take<std::byte>(0);
  CHECK(!edge.overflowed());
  edge.take<std::byte>(1);
  CHECK(edge.overflowed());
  CHECK(edge.bytes() == ~std::size_t{0} - 255);
  workspace_carver product;  // count · sizeof(T) itself past std::size_t: 2^62 floats
  product.take<float>(index_t{1} << 62);
  CHECK(product.overflowed());
  CHECK(product.bytes() == 0);
  workspace_carver negative;
  CHECK(negative.take<float>(-1) == nullptr);
  CHECK(negative.overflowed());

  // The host's size query refuses such a carve, naming what sized it.
  using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens>;
  const host::compressor_shape shape{.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 16, .max_chunk = 32};
  try {
    (void)comp::workspace_bytes(shape, index_t{1} << 62);
    FAIL("no kvcap::error");
  } catch (const kvcap::error& e) {
    CHECK(e.argument() == "workspace bytes (shape, budget)");
  }
}

TEST_CASE_TEMPLATE("peak bytes equal the formula for fixed token budgets", T, float, Eigen::half, Eigen::bfloat16) {
  struct config {
    dims d;
    index_t budget, input;
  };
  const config configs[] = {
      {{2, 2, 2, 16, 32}, 64, 400},   {{3, 4, 8, 40, 17}, 100, 333}, {{1, 1, 1, 1, 1}, 1, 10},
      {{2, 3, 9, 7, 50}, 10, 260},    {{1, 2, 2, 33, 300}, 700, 1500},
  };
  for (const config& c : configs) {
    const std::size_t expected = formula_peak<T>(c.d, c.budget);
    CAPTURE(c.budget);
    CAPTURE(c.d.dim);
    CHECK(measured_peak<T, layouts::nhd, scorers::key_norm>(c.d, budgets::fixed_tokens{c.budget}, c.input) == expected);
    CHECK(measured_peak<T, layouts::hnd, scorers::key_diff>(c.d, budgets::fixed_tokens{c.budget}, c.input) == expected);
    CHECK(measured_peak<T, layouts::hnd, scorers::recency>(c.d, budgets::fixed_tokens{c.budget}, c.input) == expected);
    CHECK(measured_peak<T, layouts::nhd, scorers::value_norm>(c.d, budgets::fixed_tokens{c.budget}, c.input) ==
          expected);
  }
}

TEST_CASE("peak bytes equal the formula for fixed byte budgets") {
  // float, 2 heads, dim 8: K + V of a token = 2 * 2 * 8 * 4 = 128 bytes; 10000 / 128 = 78 tokens.
  const dims a{2, 2, 4, 8, 20};
  CHECK(measured_peak<float, layouts::nhd, scorers::key_norm>(a, budgets::fixed_bytes{10000}, 300) ==
        formula_peak<float>(a, 78));
  // half, 3 heads, dim 10: 2 * 3 * 10 * 2 = 120 bytes; 5000 / 120 = 41 tokens.
  const dims b{3, 3, 3, 10, 16};
  CHECK(measured_peak<Eigen::half, layouts::hnd, scorers::key_diff>(b, budgets::fixed_bytes{5000}, 300) ==
        formula_peak<Eigen::half>(b, 41));
  // bfloat16, 1 head, dim 64: 2 * 64 * 2 = 256 bytes; 256 * 30 + 255 bytes -> 30 tokens.
  const dims c{1, 1, 1, 64, 64};
  CHECK(measured_peak<Eigen::bfloat16, layouts::nhd, scorers::value_norm>(c, budgets::fixed_bytes{256 * 30 + 255},
                                                                          1000) == formula_peak<Eigen::bfloat16>(c, 30));
}

TEST_CASE("the peak is flat in the input length; a full cache grows linearly") {
  const dims d{2, 2, 2, 16, 256};
  const index_t budget = 256, base = 1024;
  std::size_t peaks[3], full[3];
  const index_t factors[3] = {1, 4, 16};
  for (int i = 0; i < 3; ++i) {
    const index_t input = base * factors[i];
    peaks[i] = measured_peak<float, layouts::hnd, scorers::key_diff>(d, budgets::fixed_tokens{budget}, input);
    // A full cache: the budget holds the whole input, nothing is ever evicted.
    full[i] = measured_peak<float, layouts::hnd, scorers::key_diff>(d, budgets::fixed_tokens{input}, input);
    CHECK(full[i] == formula_peak<float>(d, input));
  }
  CHECK(peaks[0] == formula_peak<float>(d, budget));
  CHECK(peaks[1] == peaks[0]);
  CHECK(peaks[2] == peaks[0]);
  // Full cache: peak = a + b * input exactly (caps are multiples of 256, so no alignment
  // slack): the 4x -> 16x step is four times the 1x -> 4x step.
  CHECK(full[1] > full[0]);
  CHECK(full[2] - full[1] == 4 * (full[1] - full[0]));
  CHECK(full[2] > 10 * peaks[2]);
}

TEST_CASE("memory(): resident and peak-resident bytes, by hand") {
  // float, 2 layers, 1 head, dim 4, budget 8, max_chunk 4.
  // Slot bytes = 1 * (2 * 4 * 4 + 40) = 72.
  const host::compressor_shape shape{.num_layers = 2, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 4, .max_chunk = 4};
  using comp = host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens>;
  std::vector<float> k(4 * 4, 1.f);
  const structures::sequence text{.length = 100};
  auto run = [&](comp& c, index_t input, bool all_layers_first) {
    for (index_t begin = 0; begin < input; begin += 4) {
      const index_t n = std::min<index_t>(4, input - begin);
      std::vector<token_meta> meta;
      for (index_t tok = begin; tok < begin + n; ++tok) meta.push_back(text.meta(tok));
      for (index_t layer = 0; layer < 2; ++layer) {
        c.append(layer, {k.data(), n, 1, 4}, {k.data(), n, 1, 4}, meta);
        if (!all_layers_first) c.compress(layer);
      }
      if (all_layers_first)
        for (index_t layer = 0; layer < 2; ++layer) c.compress(layer);
    }
  };
  SUBCASE("every layer appended before any compress: layers * min(input, budget + chunk)") {
    comp c(shape, {.budget = {8}});
    run(c, 6, true);  // chunks 4, 2: 2 * 6 = 12 tokens
    CHECK(c.memory().peak_resident_bytes == 12 * 72);
    CHECK(c.memory().resident_bytes == 12 * 72);
    comp d(shape, {.budget = {8}});
    run(d, 20, true);  // 2 * min(20, 12) = 24 tokens
    CHECK(d.memory().peak_resident_bytes == 24 * 72);
    CHECK(d.memory().resident_bytes == 16 * 72);  // 2 layers at budget
  }
  SUBCASE("append + compress layer by layer: all layers at budget but one, plus a chunk") {
    comp c(shape, {.budget = {8}});
    run(c, 20, false);  // 8 + (8 + 4) = 20 tokens
    CHECK(c.memory().peak_resident_bytes == 20 * 72);
    CHECK(c.memory().resident_bytes == 16 * 72);
  }
  SUBCASE("storage and workspace") {
    comp c(shape, {.budget = {8}});
    // cap 12: storage 2 layers * 12 * 72 = 1728; workspace 256 + 256 + 256 + 256 = 1024.
    CHECK(c.memory().storage_bytes == 1728);
    CHECK(c.memory().workspace_bytes == 1024);
    CHECK(c.memory().total_bytes() == 2752);
    CHECK(c.memory().peak_resident_bytes == 0);
  }
}

TEST_CASE("head-adaptive budgets: storage and workspace by hand, per-head scratch for the longest head") {
  // float, 2 layers, 2 kv-heads, 4 query heads (group 2), dim 16, budget M = 64, max_chunk
  // b = 32, floor F = 64 * 0.25 = 16, max_window 8. C = M + b = 96 slots a head at most while
  // heads share evenly, but one head may hold H * (M - F) + F + b = 2 * 48 + 16 + 32 = 144.
  //   storage = 2 layers * 96 * 2 heads * (2 * 16 * 4 + 40) + 2 layers * (2 * 2 + 1) * 8 = 64512 + 80
  //   selection over all heads: a256(4 * 2 * 96) * 2 + a256(2 * 96) = 768 + 768 + 256
  //   head offsets a256(8 * 3), repack a256(8 * 2), mean unit key a256(4 * 16): 256 * 3
  //   blend of 2: components a256(4 * 2 * 144) = 1280                       -> 3840 in all
  //   window (rows R = 8 * 2 = 16): queries a256(4 * 16 * 16) = 1024, keys a256(4 * 256 * 16)
  //     = 16384, logits a256(4 * 16 * 256) = 16384, row max and sum 256 + 256, mass a256(4 * 144)
  //     = 768                                                                -> 2560 + 35072 = 37632
  const host::compressor_shape shape{.num_layers = 2, .num_kv_heads = 2, .num_q_heads = 4, .head_dim = 16,
                                     .max_chunk = 32, .max_window = 8};
  const budgets::head_adaptive budget{.tokens = 64, .min_head_fraction = 0.25};
  const std::size_t storage = 64512 + 80;
  auto run = [&](auto scorer, std::size_t workspace) {
    using comp = host::compressor<float, layouts::varlen, decltype(scorer), budgets::head_adaptive>;
    CHECK(comp::head_capacity(shape, 64, budget) == 144);
    CHECK(comp::workspace_bytes(shape, 96, 144) == workspace);
    host::counting_resource counted;
    comp c(shape, {.scorer = scorer, .budget = budget}, &counted);
    CHECK(c.memory().storage_bytes == storage);
    CHECK(c.memory().workspace_bytes == workspace);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> k(32 * 2 * 16), v(k.size()), q(8 * 4 * 16);
    std::vector<token_meta> meta(32);
    for (index_t begin = 0; begin < 320; begin += 32) {
      for (index_t tok = 0; tok < 32; ++tok) meta[tok] = structures::sequence{.length = 320}.meta(begin + tok);
      for (index_t layer = 0; layer < 2; ++layer) {
        for (auto* x : {&k, &v, &q})
          for (auto& e : *x) e = u(rng);
        c.append(layer, {k.data(), 32, 2, 16}, {v.data(), 32, 2, 16}, meta);
        c.compress(layer, {q.data(), 8, 4, 16});
      }
    }
    CHECK(counted.peak_bytes() == storage + workspace);
    CHECK(counted.current_bytes() == counted.peak_bytes());
  };
  run(scorers::blend<scorers::key_norm, scorers::value_norm>{}, 3840);
  run(scorers::observation_window{}, 37632);
}
