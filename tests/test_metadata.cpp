// Metadata survives compaction: every kept token keeps its logical index, its rotary
// position (t, h, w), frame, row, col, segment, kind, protection and size, exactly as the
// structure model produced them, in every head, after every compress; and the next chunk
// continues from the logical count, not from the physical one.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <random>
#include <vector>

#include "test_seed.hpp"

namespace {

using namespace kvcap;

/// Field by field, so a failure names the field.
void check_meta(const token_meta& got, const token_meta& expected) {
  CHECK(got.index == expected.index);
  CHECK(got.position.t == expected.position.t);
  CHECK(got.position.h == expected.position.h);
  CHECK(got.position.w == expected.position.w);
  CHECK(got.frame == expected.frame);
  CHECK(got.row == expected.row);
  CHECK(got.col == expected.col);
  CHECK(got.segment == expected.segment);
  CHECK(got.kind == expected.kind);
  CHECK(got.is_protected == expected.is_protected);
  CHECK(got.size == expected.size);
}

/// Runs `structure` through a compressor in chunks planned by plan_chunks; after each
/// compress every resident slot of every head must carry structure.meta(its index).
template <class Scorer, class Structure>
void run_structure(const Structure& s, Scorer scorer, index_t budget, index_t max_chunk, index_t layers,
                   index_t heads, std::uint64_t seed) {
  const index_t dim = 6;
  const auto plan = plan_chunks(s, chunk_schedule::blockwise(max_chunk));
  host::compressor<float, layouts::hnd, Scorer, budgets::fixed_tokens, reducers::evict, Structure> c(
      {.num_layers = layers, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim, .max_chunk = max_chunk},
      {.scorer = scorer, .budget = {budget}, .structure = s});
  std::mt19937_64 rng(kvcap_test::shifted(seed));
  std::normal_distribution<float> normal;
  std::vector<float> k, v;
  std::vector<token_meta> meta;
  for (const chunk_range r : plan) {
    meta.clear();
    for (index_t tok = r.begin; tok < r.end; ++tok) meta.push_back(s.meta(tok));
    for (index_t layer = 0; layer < layers; ++layer) {
      k.resize(static_cast<std::size_t>(r.size() * heads * dim));
      v.resize(k.size());
      for (auto& x : k) x = normal(rng);
      for (auto& x : v) x = normal(rng);
      c.append(layer, {k.data(), r.size(), heads, dim}, {v.data(), r.size(), heads, dim}, meta);
      c.compress(layer);
      CHECK(c.logical_length(layer) == r.end);
      const auto& view = c.layer(layer);
      CHECK(view.length == std::min(r.end, budget));
      for (index_t head = 0; head < heads; ++head)
        for (index_t slot = 0; slot < view.length; ++slot) {
          const token_meta& m = view.meta_at(slot, head);
          REQUIRE(m.index >= 0);
          REQUIRE(m.index < r.end);
          check_meta(m, s.meta(m.index));
          if (slot > 0) CHECK(view.meta_at(slot - 1, head).index < m.index);
        }
    }
  }
}

// The prompt used below: a system prompt, an image, a video, text, a tiled image and the
// question. Positions (Qwen2-VL M-RoPE): see test_structures.cpp for the hand derivation.
//   seg 0 text(6, protected)   tokens  0..5    positions 0..5
//   seg 1 image 4x6            tokens  6..29   (6, 6 + row, 6 + col)
//   seg 2 video 4x3x3          tokens 30..65   (12 + frame, 12 + row, 12 + col)
//   seg 3 text(3)              tokens 66..68   positions 16..18
//   seg 4 image 2x4, tiles 2x2 tokens 69..76   (19, 19 + row, 19 + col)
//   seg 5 text(5, protected)   tokens 77..81   positions 23..27
const structures::segment prompt_segments[] = {
    structures::segment::text(6, true), structures::segment::image(4, 6), structures::segment::video(4, 3, 3),
    structures::segment::text(3),       structures::segment::image(2, 4, 2, 2), structures::segment::text(5, true)};

}  // namespace

TEST_CASE("temporal_frames metadata survives compaction (key_norm, key_diff, value_norm)") {
  const structures::temporal_frames video{.frames = 6, .rows = 3, .cols = 4};
  run_structure(video, scorers::key_norm{}, 10, 12, 2, 3, 1);
  run_structure(video, scorers::key_diff{}, 10, 12, 1, 2, 2);
  run_structure(video, scorers::value_norm{}, 7, 5, 3, 1, 3);  // chunks cut inside frames
}

TEST_CASE("mixed-prompt metadata survives compaction, protected segments stay") {
  const structures::mixed prompt{prompt_segments};
  REQUIRE(prompt.num_tokens() == 82);
  run_structure(prompt, scorers::key_norm{}, 16, 9, 2, 2, 4);
  run_structure(prompt, scorers::key_diff{}, 20, 13, 1, 3, 5);
  run_structure(prompt, scorers::recency{.num_sinks = 1}, 11, 7, 1, 1, 6);  // budget = protected tokens
}

TEST_CASE("recency over a video keeps the last frame with its exact metadata") {
  // 6 frames of 3x4, chunks of one frame (12 tokens), budget 10, no sinks: the kept tokens
  // are the newest ten, 62..71; token 62 is frame 5, in-frame offset 62 - 60 = 2, i.e.
  // row 0, col 2: position (5, 0, 2).
  const structures::temporal_frames video{.frames = 6, .rows = 3, .cols = 4};
  host::compressor<Eigen::half, layouts::nhd, scorers::recency, budgets::fixed_tokens, reducers::evict,
                   structures::temporal_frames>
      c({.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 4, .head_dim = 3, .max_chunk = 12},
        {.scorer = {.num_sinks = 0}, .budget = {10}, .structure = video});
  std::vector<Eigen::half> k(12 * 2 * 3, Eigen::half(1.f));
  for (const chunk_range r : plan_chunks(video, chunk_schedule::blockwise(12))) {
    CHECK(r.size() == 12);
    std::vector<token_meta> meta;
    for (index_t tok = r.begin; tok < r.end; ++tok) meta.push_back(video.meta(tok));
    c.append(0, {k.data(), 12, 2, 3}, {k.data(), 12, 2, 3}, meta);
    c.compress(0);
  }
  const auto& view = c.layer(0);
  REQUIRE(view.length == 10);
  for (index_t head = 0; head < 2; ++head) {
    const token_meta& first = view.meta_at(0, head);
    CHECK(first.index == 62);
    CHECK(first.position == rope_position{5, 0, 2});
    CHECK(first.frame == 5);
    CHECK(first.row == 0);
    CHECK(first.col == 2);
    CHECK(first.kind == segment_kind::video);
    CHECK(first.size == 1);
    const token_meta& last = view.meta_at(9, head);  // token 71: frame 5, row 2, col 3
    CHECK(last.index == 71);
    CHECK(last.position == rope_position{5, 2, 3});
    CHECK(last.row == 2);
    CHECK(last.col == 3);
  }
  CHECK(c.logical_length(0) == 72);
}

TEST_CASE("protected system prompt and question keep their literal positions") {
  // Budget 11 = the 6 + 5 protected tokens: after the whole prompt exactly those remain,
  // with positions 0..5 (system prompt) and 23..27 (question, after the spans 6 + 6 + 4 +
  // 3 + 4 = 23 of the segments before it).
  const structures::mixed prompt{prompt_segments};
  host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens, reducers::evict, structures::mixed>
      c({.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 2, .max_chunk = 10},
        {.budget = {11}, .structure = prompt});
  std::vector<float> k(10 * 2 * 2);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i % 7) - 3.f;
  for (const chunk_range r : plan_chunks(prompt, chunk_schedule::blockwise(10))) {
    std::vector<token_meta> meta;
    for (index_t tok = r.begin; tok < r.end; ++tok) meta.push_back(prompt.meta(tok));
    c.append(0, {k.data(), r.size(), 2, 2}, {k.data(), r.size(), 2, 2}, meta);
    c.compress(0);
  }
  const auto& view = c.layer(0);
  REQUIRE(view.length == 11);
  for (index_t head = 0; head < 2; ++head)
    for (index_t slot = 0; slot < 11; ++slot) {
      const token_meta& m = view.meta_at(slot, head);
      const bool system = slot < 6;
      CHECK(m.index == (system ? slot : 77 + slot - 6));
      const std::int32_t p = system ? static_cast<std::int32_t>(slot) : static_cast<std::int32_t>(23 + slot - 6);
      CHECK(m.position == rope_position{p, p, p});
      CHECK(m.segment == (system ? 0 : 5));
      CHECK(m.kind == segment_kind::text);
      CHECK(m.is_protected);
      CHECK(m.size == 1);
    }
}

TEST_CASE("the next chunk continues from the logical count, not the physical one") {
  // Budget 4, chunks of 6: after two chunks 4 tokens are resident but 12 were seen; the
  // third chunk must start at index 12 (index 4 is refused: indices only grow).
  host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 1, .max_chunk = 6}, {.budget = {4}});
  const structures::sequence text{.length = 18};
  std::vector<float> k(6, 1.f);
  auto chunk_meta = [&](index_t begin) {
    std::vector<token_meta> meta;
    for (index_t tok = begin; tok < begin + 6; ++tok) meta.push_back(text.meta(tok));
    return meta;
  };
  for (index_t begin : {0, 6}) {
    c.append(0, {k.data(), 6, 1, 1}, {k.data(), 6, 1, 1}, chunk_meta(begin));
    c.compress(0);
  }
  CHECK(c.length(0) == 4);
  CHECK(c.logical_length(0) == 12);
  CHECK_THROWS_AS(c.append(0, {k.data(), 6, 1, 1}, {k.data(), 6, 1, 1}, chunk_meta(4)), error);
  c.append(0, {k.data(), 6, 1, 1}, {k.data(), 6, 1, 1}, chunk_meta(12));
  CHECK(c.logical_length(0) == 18);
  CHECK(c.layer(0).meta_at(9, 0).position.t == 17);
  // reset() forgets the prompt: indices start again at 0.
  c.reset();
  CHECK(c.length(0) == 0);
  CHECK(c.logical_length(0) == 0);
  c.append(0, {k.data(), 6, 1, 1}, {k.data(), 6, 1, 1}, chunk_meta(0));
  CHECK(c.length(0) == 6);
}
