// Structure models and the chunk planner: token metadata and M-RoPE positions, grid and
// temporal neighbours, tiled token order, chunk boundaries, and plans that cover the
// prompt exactly once, in order, with chunks aligned to frames when they can be.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <random>
#include <vector>

#include "test_seed.hpp"

namespace {

using namespace kvcap;

/// Chunks start at 0, follow each other without gap or overlap, end at n, are non-empty,
/// and respect their limits (the first one the bulk limit when there is one).
void check_cover(const std::vector<chunk_range>& plan, index_t n, chunk_schedule schedule) {
  REQUIRE(!plan.empty());
  CHECK(plan.front().begin == 0);
  CHECK(plan.back().end == n);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    CHECK(plan[i].size() > 0);
    const index_t limit = i == 0 && schedule.bulk_tokens > 0 ? schedule.bulk_tokens : schedule.max_chunk;
    CHECK(plan[i].size() <= limit);
    if (i > 0) CHECK(plan[i].begin == plan[i - 1].end);
  }
}

/// The documented rule: a chunk that does not reach the end of the prompt ends at the
/// strongest boundary in the upper half of its reach, [begin + max(1, limit / 2), begin +
/// limit], at the furthest place of that strength.
template <class S>
void check_best_boundaries(const S& s, const std::vector<chunk_range>& plan, chunk_schedule schedule) {
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const chunk_range c = plan[i];
    if (c.end == s.num_tokens()) continue;
    const index_t limit = i == 0 && schedule.bulk_tokens > 0 ? schedule.bulk_tokens : schedule.max_chunk;
    const index_t lo = c.begin + std::max<index_t>(1, limit / 2), hi = c.begin + limit;
    REQUIRE(c.end >= lo);
    REQUIRE(c.end <= hi);
    const boundary at_end = s.boundary_before(c.end);
    for (index_t e = lo; e <= hi; ++e) {
      const boundary b = s.boundary_before(e);
      CHECK(b <= at_end);
      if (e > c.end) CHECK(b < at_end);
    }
  }
}

std::vector<index_t> sizes(const std::vector<chunk_range>& plan) {
  std::vector<index_t> out;
  for (const chunk_range& c : plan) out.push_back(c.size());
  return out;
}

}  // namespace

TEST_CASE("sequence: 1-D positions, protected prefix, left/right neighbours") {
  const structures::sequence s{.length = 10, .num_protected = 3};
  CHECK(s.num_tokens() == 10);
  const token_meta m = s.meta(7);
  CHECK(m.index == 7);
  CHECK(m.position == rope_position{7, 7, 7});
  CHECK(m.kind == segment_kind::text);
  CHECK_FALSE(m.is_protected);
  CHECK(s.meta(2).is_protected);
  CHECK_FALSE(s.meta(3).is_protected);
  index_t out = -1;
  CHECK(s.neighbour(4, {0, 0, 1}, out));
  CHECK(out == 5);
  CHECK(s.neighbour(4, {0, 0, -4}, out));
  CHECK(out == 0);
  CHECK_FALSE(s.neighbour(0, {0, 0, -1}, out));
  CHECK_FALSE(s.neighbour(9, {0, 0, 1}, out));
  CHECK_FALSE(s.neighbour(4, {-1, 0, 0}, out));  // no frames
  CHECK_FALSE(s.neighbour(4, {0, 1, 0}, out));   // no rows
  CHECK(s.boundary_before(5) == boundary::token);
  CHECK(s.check(m).ok);
  token_meta image = m;
  image.kind = segment_kind::image;
  CHECK_FALSE(s.check(image).ok);
}

TEST_CASE("spatial_grid: positions (0, row, col) and 4-neighbours") {
  const structures::spatial_grid g{.rows = 3, .cols = 5};
  CHECK(g.num_tokens() == 15);
  // Token 13 = row 2, col 3 (raster: 2 * 5 + 3).
  const token_meta m = g.meta(13);
  CHECK(m.position == rope_position{0, 2, 3});
  CHECK(m.row == 2);
  CHECK(m.col == 3);
  CHECK(m.frame == 0);
  CHECK(m.kind == segment_kind::image);
  index_t out = -1;
  CHECK(g.neighbour(7, {0, -1, 0}, out));  // (1,2) up -> (0,2) = 2
  CHECK(out == 2);
  CHECK(g.neighbour(7, {0, 1, 0}, out));  // down -> (2,2) = 12
  CHECK(out == 12);
  CHECK(g.neighbour(7, {0, 0, -1}, out));  // left -> 6
  CHECK(out == 6);
  CHECK(g.neighbour(7, {0, 0, 1}, out));  // right -> 8
  CHECK(out == 8);
  // Corners and edges: nothing outside the grid, no wrap to the next row.
  CHECK_FALSE(g.neighbour(0, {0, -1, 0}, out));
  CHECK_FALSE(g.neighbour(0, {0, 0, -1}, out));
  CHECK_FALSE(g.neighbour(4, {0, 0, 1}, out));  // (0,4) right would wrap to 5
  CHECK_FALSE(g.neighbour(14, {0, 1, 0}, out));
  CHECK_FALSE(g.neighbour(7, {-1, 0, 0}, out));  // one frame only
  CHECK(g.boundary_before(10) == boundary::row);
  CHECK(g.boundary_before(11) == boundary::token);
  CHECK(g.boundary_before(0) == boundary::frame);
}

TEST_CASE("temporal_frames: positions (frame, row, col), previous-frame and grid neighbours") {
  const structures::temporal_frames v{.frames = 4, .rows = 3, .cols = 4};  // 12 tokens a frame
  CHECK(v.num_tokens() == 48);
  // Token 30 = frame 2, in-frame 6 = row 1, col 2.
  const token_meta m = v.meta(30);
  CHECK(m.index == 30);
  CHECK(m.position == rope_position{2, 1, 2});
  CHECK(m.frame == 2);
  CHECK(m.row == 1);
  CHECK(m.col == 2);
  CHECK(m.kind == segment_kind::video);
  index_t out = -1;
  CHECK(v.neighbour(30, {-1, 0, 0}, out));  // same patch, previous frame: 30 - 12
  CHECK(out == 18);
  CHECK(v.neighbour(30, {-2, 0, 0}, out));
  CHECK(out == 6);
  CHECK_FALSE(v.neighbour(30, {-3, 0, 0}, out));  // before frame 0
  CHECK_FALSE(v.neighbour(5, {-1, 0, 0}, out));   // frame 0 has no previous frame
  CHECK(v.neighbour(30, {1, 0, 0}, out));
  CHECK(out == 42);
  CHECK_FALSE(v.neighbour(42, {1, 0, 0}, out));  // last frame
  CHECK(v.neighbour(30, {0, -1, 0}, out));
  CHECK(out == 26);
  CHECK(v.neighbour(30, {0, 1, 0}, out));
  CHECK(out == 34);
  CHECK(v.neighbour(30, {0, 0, -1}, out));
  CHECK(out == 29);
  CHECK(v.neighbour(30, {0, 0, 1}, out));
  CHECK(out == 31);
  CHECK_FALSE(v.neighbour(35, {0, 0, 1}, out));  // (2,2,3): the right edge, not token 36
  CHECK_FALSE(v.neighbour(24, {0, -1, 0}, out));  // (2,0,0): the top edge, not frame 1
  CHECK(v.boundary_before(24) == boundary::frame);
  CHECK(v.boundary_before(28) == boundary::row);
  CHECK(v.boundary_before(29) == boundary::token);
  for (index_t tok = 0; tok < v.num_tokens(); ++tok) CHECK(v.check(v.meta(tok)).ok);
}

TEST_CASE("tiled grid order: offset and at are inverse, tiles run in raster order") {
  // 4 x 6 grid, tiles of 2 x 3: tile 0 = rows 0-1, cols 0-2; tile 1 = rows 0-1, cols 3-5;
  // tile 2 = rows 2-3, cols 0-2; tile 3 = rows 2-3, cols 3-5. Six tokens a tile.
  const structures::grid_geometry g{.frames = 2, .rows = 4, .cols = 6, .tile_rows = 2, .tile_cols = 3};
  CHECK(g.tiled());
  // (row 1, col 4): tile 1, in-tile (1, 1) -> 6 + 1 * 3 + 1 = 10.
  CHECK(g.offset(0, 1, 4) == 10);
  // (row 2, col 0): tile 2 -> 12.
  CHECK(g.offset(0, 2, 0) == 12);
  // (row 0, col 3): tile 1 starts -> 6; (row 0, col 2) is the third token -> 2.
  CHECK(g.offset(0, 0, 3) == 6);
  CHECK(g.offset(0, 0, 2) == 2);
  // Frame 1 adds 24.
  CHECK(g.offset(1, 3, 5) == 24 + 23);
  const auto c = g.at(10);
  CHECK(c.frame == 0);
  CHECK(c.row == 1);
  CHECK(c.col == 4);
  // Every offset is hit exactly once.
  std::vector<int> hits(static_cast<std::size_t>(g.num_tokens()), 0);
  for (index_t f = 0; f < 2; ++f)
    for (index_t r = 0; r < 4; ++r)
      for (index_t col = 0; col < 6; ++col) {
        const index_t off = g.offset(f, r, col);
        REQUIRE(off >= 0);
        REQUIRE(off < g.num_tokens());
        ++hits[off];
        const auto back = g.at(off);
        CHECK(back.frame == f);
        CHECK(back.row == r);
        CHECK(back.col == col);
      }
  for (int h : hits) CHECK(h == 1);
  // Boundaries: frame at 24, tile at 6, 12, 18, a row inside a tile every 3 tokens.
  CHECK(g.boundary_at(24) == boundary::frame);
  CHECK(g.boundary_at(6) == boundary::tile);
  CHECK(g.boundary_at(18) == boundary::tile);
  CHECK(g.boundary_at(3) == boundary::row);
  CHECK(g.boundary_at(9) == boundary::row);
  CHECK(g.boundary_at(4) == boundary::token);
  // Neighbours follow the grid, not the token order: right of (1, 2) is (1, 3), in the next tile.
  index_t out = -1;
  CHECK(g.neighbour(g.offset(0, 1, 2), {0, 0, 1}, out));
  CHECK(out == g.offset(0, 1, 3));
  CHECK(out == 9);
  // A tiled image in spatial_grid reports the grid coordinates of tile-ordered tokens.
  const structures::spatial_grid tiled{.rows = 4, .cols = 6, .tile_rows = 2, .tile_cols = 3};
  CHECK(tiled.meta(10).position == rope_position{0, 1, 4});
}

TEST_CASE("mixed: Qwen2-VL M-RoPE positions, segment boundaries, neighbours stay inside a segment") {
  // seg 0 text(6, protected): tokens 0..5, positions 0..5; span 6 -> next starts at 6.
  // seg 1 image 4x6:          tokens 6..29; (6, 6 + row, 6 + col); span max(1, 4, 6) = 6 -> 12.
  // seg 2 video 4x3x3:        tokens 30..65; (12 + frame, 12 + row, 12 + col); span max(4, 3, 3) = 4 -> 16.
  // seg 3 text(3):            tokens 66..68; positions 16..18; span 3 -> 19.
  // seg 4 image 2x4, tiles 2x2: tokens 69..76; (19, 19 + row, 19 + col); span max(1, 2, 4) = 4 -> 23.
  // seg 5 text(5, protected): tokens 77..81; positions 23..27.
  const structures::segment segs[] = {
      structures::segment::text(6, true), structures::segment::image(4, 6), structures::segment::video(4, 3, 3),
      structures::segment::text(3),       structures::segment::image(2, 4, 2, 2), structures::segment::text(5, true)};
  const structures::mixed p{segs};
  CHECK(p.num_tokens() == 82);

  CHECK(p.meta(0).position == rope_position{0, 0, 0});
  CHECK(p.meta(5).position == rope_position{5, 5, 5});
  CHECK(p.meta(5).is_protected);
  // Image token 21 = offset 15 = row 2, col 3.
  const token_meta img = p.meta(21);
  CHECK(img.position == rope_position{6, 8, 9});
  CHECK(img.row == 2);
  CHECK(img.col == 3);
  CHECK(img.segment == 1);
  CHECK(img.kind == segment_kind::image);
  CHECK_FALSE(img.is_protected);
  // Video token 62 = offset 32 = frame 3, in-frame 5 = row 1, col 2.
  const token_meta vid = p.meta(62);
  CHECK(vid.position == rope_position{15, 13, 14});
  CHECK(vid.frame == 3);
  CHECK(vid.row == 1);
  CHECK(vid.col == 2);
  CHECK(vid.segment == 2);
  CHECK(vid.kind == segment_kind::video);
  CHECK(p.meta(66).position == rope_position{16, 16, 16});
  CHECK(p.meta(68).position == rope_position{18, 18, 18});
  CHECK(p.meta(68).segment == 3);
  // Tiled image token 74 = offset 5 = tile 1, in-tile 1 = row 0, col 3.
  CHECK(p.meta(74).position == rope_position{19, 19, 22});
  CHECK(p.meta(77).position == rope_position{23, 23, 23});
  CHECK(p.meta(81).position == rope_position{27, 27, 27});
  CHECK(p.meta(81).segment == 5);
  CHECK(p.meta(81).is_protected);
  // Positions never go backwards along the prompt in t (what the compressor checks).
  for (index_t tok = 1; tok < p.num_tokens(); ++tok) CHECK(p.meta(tok).position.t >= p.meta(tok - 1).position.t);
  for (index_t tok = 0; tok < p.num_tokens(); ++tok) CHECK(p.check(p.meta(tok)).ok);

  CHECK(p.boundary_before(6) == boundary::segment);
  CHECK(p.boundary_before(30) == boundary::segment);
  CHECK(p.boundary_before(77) == boundary::segment);
  CHECK(p.boundary_before(12) == boundary::row);    // image row 1
  CHECK(p.boundary_before(39) == boundary::frame);  // video frame 1
  CHECK(p.boundary_before(33) == boundary::row);
  CHECK(p.boundary_before(73) == boundary::tile);   // tiled image, tile 1
  CHECK(p.boundary_before(3) == boundary::token);   // inside text
  CHECK(p.boundary_before(7) == boundary::token);

  index_t out = -1;
  CHECK(p.neighbour(62, {-1, 0, 0}, out));  // previous frame: 62 - 9
  CHECK(out == 53);
  CHECK_FALSE(p.neighbour(32, {-1, 0, 0}, out));  // frame 0 of the video: not into the image
  CHECK(p.neighbour(21, {0, -1, 0}, out));        // image (2,3) up -> (1,3) = 6 + 9
  CHECK(out == 15);
  CHECK_FALSE(p.neighbour(29, {0, 0, 1}, out));  // last image token: not into the video
  CHECK(p.neighbour(66, {0, 0, 1}, out));        // text: the next token
  CHECK(out == 67);
  CHECK_FALSE(p.neighbour(68, {0, 0, 1}, out));  // end of that text segment
  CHECK_FALSE(p.neighbour(66, {0, 0, -1}, out));

  token_meta wrong = p.meta(21);
  wrong.kind = segment_kind::video;
  CHECK_FALSE(p.check(wrong).ok);
  CHECK(std::string(p.check(wrong).field) == "kind");
  wrong = p.meta(21);
  wrong.col = 6;
  CHECK(std::string(p.check(wrong).field) == "col");
  CHECK(p.check(wrong).limit == 6);
}

TEST_CASE("plan_chunks: 28x28 frames with max_chunk 784 give one frame per chunk") {
  const structures::temporal_frames video{.frames = 5, .rows = 28, .cols = 28};
  const auto plan = plan_chunks(video, chunk_schedule::blockwise(784));
  REQUIRE(plan.size() == 5);
  for (index_t f = 0; f < 5; ++f) CHECK(plan[f] == chunk_range{f * 784, (f + 1) * 784});
  check_cover(plan, video.num_tokens(), chunk_schedule::blockwise(784));
  CHECK(max_chunk_size(plan) == 784);
}

TEST_CASE("plan_chunks: 16x24 frames with max_chunk 784 give two-frame chunks of 768") {
  // 384 tokens a frame; 784 reaches into the third frame, whose start (768) is the furthest
  // frame boundary in the upper half [392, 784].
  const structures::temporal_frames video{.frames = 7, .rows = 16, .cols = 24};
  const auto plan = plan_chunks(video, chunk_schedule::blockwise(784));
  CHECK(sizes(plan) == std::vector<index_t>{768, 768, 768, 384});
  check_cover(plan, video.num_tokens(), chunk_schedule::blockwise(784));
}

TEST_CASE("plan_chunks: without a frame boundary in reach, chunks end on a row") {
  // 28x28 frames, max_chunk 300: reach 300, upper half [150, 300]; rows start every 28
  // tokens, the furthest is 280. From 280: reach 580, the furthest row start <= 580 is 560.
  const structures::temporal_frames video{.frames = 2, .rows = 28, .cols = 28};
  const auto plan = plan_chunks(video, chunk_schedule::blockwise(300));
  REQUIRE(plan.size() >= 3);
  CHECK(plan[0] == chunk_range{0, 280});
  CHECK(plan[1] == chunk_range{280, 560});
  // From 560: reach 860, the frame boundary 784 lies in [710, 860] and wins over rows.
  CHECK(plan[2] == chunk_range{560, 784});
  check_cover(plan, video.num_tokens(), chunk_schedule::blockwise(300));
  // Plain text has no boundaries: chunks are exactly max_chunk, the last one the rest.
  const auto text = plan_chunks(structures::sequence{.length = 100}, chunk_schedule::blockwise(30));
  CHECK(sizes(text) == std::vector<index_t>{30, 30, 30, 10});
}

TEST_CASE("plan_chunks: the hybrid schedule's first chunk is a bulk of up to the budget") {
  // Text, budget 100, max_chunk 30: bulk [0, 100), then 30-token chunks.
  const structures::sequence text{.length = 250};
  const auto hybrid = chunk_schedule::hybrid(100, 30);
  CHECK(hybrid.bulk_tokens == 100);
  CHECK(hybrid.max_chunk == 30);
  const auto plan = plan_chunks(text, hybrid);
  CHECK(sizes(plan) == std::vector<index_t>{100, 30, 30, 30, 30, 30});
  check_cover(plan, 250, hybrid);
  // Video, 28x28 frames x 6, budget 2048, max_chunk 784: the bulk may reach 2048, the
  // furthest frame boundary in [1024, 2048] is 1568 (two frames); then one frame a chunk.
  const structures::temporal_frames video{.frames = 6, .rows = 28, .cols = 28};
  const auto vplan = plan_chunks(video, chunk_schedule::hybrid(2048, 784));
  CHECK(vplan.front() == chunk_range{0, 1568});
  CHECK(sizes(vplan) == std::vector<index_t>{1568, 784, 784, 784, 784});
  CHECK(max_chunk_size(vplan) == 1568);
  // A budget below max_chunk: the bulk is max_chunk.
  CHECK(chunk_schedule::hybrid(100, 300).bulk_tokens == 300);
  // A prompt shorter than the budget is one bulk chunk.
  CHECK(plan_chunks(structures::sequence{.length = 80}, hybrid) == std::vector<chunk_range>{{0, 80}});
}

TEST_CASE("a hybrid plan runs through a compressor declared with max_chunk") {
  // The bulk chunk (up to the budget) is larger than max_chunk but arrives in an empty cache
  // of capacity budget + max_chunk.
  const structures::temporal_frames video{.frames = 6, .rows = 8, .cols = 8};  // 64 a frame
  const index_t budget = 150, max_chunk = 64;
  const auto plan = plan_chunks(video, chunk_schedule::hybrid(budget, max_chunk));
  CHECK(plan.front() == chunk_range{0, 128});
  host::compressor<float, layouts::nhd, scorers::key_diff, budgets::fixed_tokens, reducers::evict,
                   structures::temporal_frames>
      c({.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 1, .head_dim = 4, .max_chunk = max_chunk},
        {.budget = {budget}, .structure = video});
  std::vector<float> k(static_cast<std::size_t>(max_chunk_size(plan) * 4));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>((i * 37) % 17) - 8.f;
  for (const chunk_range r : plan) {
    std::vector<token_meta> meta;
    for (index_t tok = r.begin; tok < r.end; ++tok) meta.push_back(video.meta(tok));
    c.append(0, {k.data(), r.size(), 1, 4}, {k.data(), r.size(), 1, 4}, meta);
    CHECK(c.length(0) <= budget + max_chunk);
    c.compress(0);
    CHECK(c.length(0) <= budget);
  }
  CHECK(c.logical_length(0) == video.num_tokens());
}

TEST_CASE("plan_chunks covers random prompts exactly once, in order") {
  std::mt19937_64 rng(kvcap_test::shifted(11));
  auto pick = [&](index_t lo, index_t hi) { return std::uniform_int_distribution<index_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 300; ++trial) {
    const index_t max_chunk = pick(1, 200);
    const chunk_schedule schedule =
        trial % 2 ? chunk_schedule::blockwise(max_chunk) : chunk_schedule::hybrid(pick(1, 400), max_chunk);
    CAPTURE(trial);
    const int kind = trial % 3;
    if (kind == 0) {
      const structures::temporal_frames v{.frames = pick(1, 5), .rows = pick(1, 20), .cols = pick(1, 20)};
      check_cover(plan_chunks(v, schedule), v.num_tokens(), schedule);
      check_best_boundaries(v, plan_chunks(v, schedule), schedule);
    } else if (kind == 1) {
      const index_t tr = pick(1, 4), tc = pick(1, 4);
      const structures::spatial_grid g{.rows = tr * pick(1, 6), .cols = tc * pick(1, 6), .tile_rows = tr, .tile_cols = tc};
      check_cover(plan_chunks(g, schedule), g.num_tokens(), schedule);
      check_best_boundaries(g, plan_chunks(g, schedule), schedule);
    } else {
      const structures::segment segs[] = {structures::segment::text(pick(1, 50), true),
                                          structures::segment::image(pick(1, 12), pick(1, 12)),
                                          structures::segment::video(pick(1, 4), pick(1, 8), pick(1, 8)),
                                          structures::segment::text(pick(1, 30))};
      const structures::mixed m{segs};
      const auto plan = plan_chunks(m, schedule);
      check_cover(plan, m.num_tokens(), schedule);
      check_best_boundaries(m, plan, schedule);
    }
  }
}

TEST_CASE("plan_chunks refuses a zero max_chunk") {
  try {
    (void)plan_chunks(structures::sequence{.length = 5}, chunk_schedule::blockwise(0));
    FAIL("planned with max_chunk 0");
  } catch (const error& e) {
    CHECK(e.argument() == "schedule.max_chunk");
    CHECK(e.received() == "0");
  }
}

TEST_CASE("neighbour_slot finds exactly the slot a scan of every slot finds") {
  // Resident tokens are a random subset (strictly increasing indices, gaps of 1 to 9) of a
  // video's tokens; neighbour_slot searches only the slots the gap allows.
  std::mt19937 rng(kvcap_test::shifted(11));
  const structures::temporal_frames video{.frames = 12, .rows = 5, .cols = 7};
  constexpr grid_offset steps[6] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
  index_t found = 0, missing = 0;
  for (int c = 0; c < 40; ++c) {
    const int max_gap = 1 + c % 9;
    std::vector<token_meta> meta;
    for (index_t index = static_cast<index_t>(rng() % 3); index < video.num_tokens();
         index += 1 + static_cast<index_t>(rng() % static_cast<unsigned>(max_gap)))
      meta.push_back(video.meta(index));
    const auto n = static_cast<index_t>(meta.size());
    layer_view<float, layouts::nhd> view{};
    view.mapping = make_mapping<layouts::nhd>(n, 1, 1);
    view.meta = meta.data(), view.length = n;
    for (index_t tok = 0; tok < n; ++tok)
      for (const grid_offset d : steps) {
        index_t index = -1, want = -1, got = -1;
        if (video.neighbour(meta[static_cast<std::size_t>(tok)].index, d, index))
          for (index_t s = 0; s < n; ++s)
            if (meta[static_cast<std::size_t>(s)].index == index) want = s;
        const bool hit = neighbour_slot(view, video, 0, n, tok, d, got);
        CAPTURE(c);
        CAPTURE(tok);
        CAPTURE(index);
        CHECK(hit == (want >= 0));
        if (hit) CHECK(got == want);
        (hit ? found : missing) += 1;
      }
  }
  CHECK(found > 1000);
  CHECK(missing > 1000);
}

TEST_CASE("an empty segment has no coordinates and no neighbours (no division by zero)") {
  const structures::grid_geometry empty{1, 1, 0};
  CHECK(empty.num_tokens() == 0);
  CHECK(empty.at(3).frame == 0);
  CHECK(empty.at(3).col == 0);
  index_t out = -1;
  CHECK_FALSE(empty.neighbour(0, grid_offset{0, 0, 1}, out));
  CHECK(empty.boundary_at(0) == boundary::frame);
  // A prompt whose question is not known yet: a token past it lands in the empty last segment.
  static const structures::segment segs[] = {structures::segment::text(4), structures::segment::image(2, 2),
                                             structures::segment::text(0)};
  const structures::mixed s{segs};
  CHECK(s.num_tokens() == 8);
  CHECK_FALSE(s.neighbour(100, grid_offset{0, 0, -1}, out));
  CHECK(s.meta(100).segment == 2);
  CHECK(s.boundary_before(100) == boundary::token);
  CHECK_FALSE(s.check(s.meta(100)).ok);  // and append refuses it: index 100 >= 8 tokens
  CHECK(s.check(s.meta(7)).ok);
}
