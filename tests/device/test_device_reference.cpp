// tests/device/test_device_reference.cpp — the device algorithm on the CPU (no GPU needed):
// rank-key encoding against kvcap::ranks_before, the radix select, the new layouts, the
// ragged plan and its validation, the workspace carve, and the host reference of the device
// compressor against the host executor over thousands of randomized cases.

#include <doctest/doctest.h>

#include <limits>

#include <kvcap/device/reference.cuh>

#include "harness.hpp"
#include "refusal_cases.hpp"

using namespace kvcap;
using namespace kvcap_test;
namespace dev = kvcap::device;

namespace {

float special_score(rng& r) {
  switch (r.between(0, 9)) {
    case 0: return 0.f;
    case 1: return -0.f;
    case 2: return HUGE_VALF;
    case 3: return -HUGE_VALF;
    case 4: return sanitize_score(std::numeric_limits<float>::quiet_NaN());
    case 5: return static_cast<float>(r.between(-3, 3));
    case 6: return std::numeric_limits<float>::denorm_min() * static_cast<float>(r.between(-2, 2));
    case 7: return std::numeric_limits<float>::max() * (r.chance(0.5) ? 1.f : -1.f);
    default: return r.normal() * static_cast<float>(r.between(1, 1000));
  }
}

}  // namespace

TEST_CASE("rank keys order tokens exactly as ranks_before") {
  rng r(1);
  for (int i = 0; i < 200000; ++i) {
    const rank_key a{special_score(r), r.between(0, 20), r.chance(0.2)};
    rank_key b{special_score(r), r.between(0, 20), r.chance(0.2)};
    if (r.chance(0.3)) b.score = a.score;
    if (r.chance(0.1)) b.score = -a.score;  // ±0 and ±inf
    if (b.index == a.index) continue;       // slots of one segment are distinct
    const auto ka = dev::encode_rank(a.is_protected, a.score, a.index);
    const auto kb = dev::encode_rank(b.is_protected, b.score, b.index);
    REQUIRE(ranks_before(a, b) == (ka > kb));
    REQUIRE(ranks_before(b, a) == (kb > ka));
    REQUIRE(dev::decode_slot(ka) == a.index);
  }
  CHECK(dev::encode_rank(false, -0.f, 3) == dev::encode_rank(false, 0.f, 3));
  CHECK(dev::decode_slot(dev::encode_rank(true, 1.f, dev::max_segment_slots - 1)) == dev::max_segment_slots - 1);
}

TEST_CASE("radix select keeps exactly the k largest keys") {
  rng r(2);
  for (int c = 0; c < 3000; ++c) {
    const index_t n = r.between(0, 300);
    std::vector<std::uint64_t> keys;
    const int mode = static_cast<int>(r.between(0, 2));
    for (index_t slot = 0; slot < n; ++slot) {
      const float score = mode == 0 ? special_score(r) : mode == 1 ? static_cast<float>(r.between(0, 2)) : 1.f;
      keys.push_back(dev::encode_rank(r.chance(0.1), score, slot));
    }
    const index_t keep = r.between(-2, n + 2);
    const dev::selection sel = dev::reference::select(keys.data(), n, keep);
    std::vector<std::uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    const index_t expect = std::clamp<index_t>(keep, 0, n);
    index_t kept = 0;
    for (index_t i = 0; i < n; ++i) {
      const bool in_top = std::find(sorted.begin(), sorted.begin() + expect, keys[i]) != sorted.begin() + expect;
      REQUIRE(sel.keeps(keys[i]) == in_top);
      kept += sel.keeps(keys[i]);
    }
    REQUIRE(kept == expect);
    REQUIRE(sel.kept == expect);
  }
}

TEST_CASE_TEMPLATE("paged mappings address every (slot, head) once, inside the pool", Layout, layouts::paged_nhd,
                   layouts::paged_hnd) {
  rng r(3);
  for (int c = 0; c < 200; ++c) {
    host_image<float, Layout> img;
    const index_t cap = r.between(1, 50), heads = r.between(1, 4), dim = r.between(1, 6);
    arrange(img, r, cap, heads, dim);
    const auto& m = img.view.mapping;
    std::vector<int> hits(static_cast<std::size_t>(m.required_span_size()), 0);
    for (index_t tok = 0; tok < cap; ++tok)
      for (index_t head = 0; head < heads; ++head) {
        const index_t at = m(tok, head);
        REQUIRE(at >= 0);
        REQUIRE(at + dim <= m.required_span_size());
        REQUIRE(at % dim == 0);
        for (index_t d = 0; d < dim; ++d) REQUIRE(++hits[at + d] == 1);
        const index_t page = img.block_table[tok / m.page_size], row = tok % m.page_size;
        const index_t in_page = Layout::kind == kv_layout::nhd ? (row * heads + head) * dim : (head * m.page_size + row) * dim;
        REQUIRE(at == page * m.page_size * heads * dim + in_page);
      }
  }
  // Identity table with one page equal to the capacity is the contiguous layout.
  using contiguous = std::conditional_t<Layout::kind == kv_layout::nhd, layouts::nhd, layouts::hnd>;
  const typename Layout::mapping p{.capacity = 12, .num_heads = 3, .head_dim = 5, .page_size = 12};
  const auto c = make_mapping<contiguous>(12, 3, 5);
  for (index_t tok = 0; tok < 12; ++tok)
    for (index_t head = 0; head < 3; ++head) CHECK(p(tok, head) == c(tok, head));
  CHECK(make_mapping<Layout>(20, 2, 4).required_span_size() == 32 * 2 * 4);  // two pages of 16
}

TEST_CASE("varlen mapping packs per-head runs; without indptr it is HND") {
  const index_t indptr[] = {2, 7, 9, 20};
  const layouts::varlen::mapping m{.capacity = 11, .num_heads = 3, .head_dim = 4, .head_indptr = indptr, .num_slots = 20};
  CHECK(m(0, 0) == 8);
  CHECK(m(4, 0) == 24);
  CHECK(m(1, 1) == 32);
  CHECK(m.room(1) == 2);
  CHECK(m.room(2) == 11);
  CHECK(m.required_span_size() == 80);
  const auto plain = make_mapping<layouts::varlen>(6, 3, 4);
  const auto hnd = make_mapping<layouts::hnd>(6, 3, 4);
  for (index_t tok = 0; tok < 6; ++tok)
    for (index_t head = 0; head < 3; ++head) CHECK(plain(tok, head) == hnd(tok, head));
  CHECK(plain.required_span_size() == hnd.required_span_size());
}

TEST_CASE("tile sizes fit the staging limit") {
  for (index_t dim : {1, 8, 64, 128, 256, 512, 4096})
    for (index_t bytes : {1, 2, 4, 8}) {
      const index_t t = dev::tile_tokens_for(dim, bytes);
      CHECK(t >= 1);
      CHECK(t <= dev::max_tile_tokens);
      CHECK((t & (t - 1)) == 0);
      if (t > 1 || dim * bytes < 20000) CHECK(dev::staging_bytes(t, dim * bytes) <= dev::staging_bytes_limit);
      if (t < dev::max_tile_tokens) CHECK(dev::staging_bytes(2 * t, dim * bytes) > dev::staging_bytes_limit);
    }
  CHECK(dev::tile_tokens_for(128, 2) == 64);
  // The widest head a tile of one slot stages, and one more that it cannot.
  for (index_t bytes : {1, 2, 4, 8}) {
    const index_t widest = dev::max_head_dim_for(bytes);
    CHECK(dev::staging_bytes(1, widest * bytes) <= dev::staging_bytes_limit);
    CHECK(dev::staging_bytes(1, (widest + 1) * bytes) > dev::staging_bytes_limit);
    CHECK(dev::tile_tokens_for(widest, bytes) == 1);
  }
  // Window blocks: rows staged with one 32-key tile, under 47 KiB (the mass kernel keeps 1 KiB).
  for (index_t dim = 1; dim <= dev::window_max_head_dim + 1; ++dim) {
    const index_t rows = dev::window_block_rows(dim);
    if (dim > dev::window_max_head_dim) {
      CHECK(rows == 0);
      continue;
    }
    REQUIRE((rows == 32 || rows == 16 || rows == 8));
    CHECK(dev::window_smem_bytes(rows, dim) <= dev::window_smem_limit);
    if (rows < 32) CHECK(dev::window_smem_bytes(2 * rows, dim) > dev::window_smem_limit);
  }
  CHECK(dev::window_block_rows(128) == 32);
  CHECK(dev::window_block_rows(256) == 8);
}

namespace {

template <class T = float, layout Layout = layouts::nhd>
struct small_batch {
  std::vector<host_image<T, Layout>> images;
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets;
  explicit small_batch(index_t n, index_t cap = 10, index_t heads = 2, index_t dim = 3) : images(n) {
    rng r(4);
    for (auto& img : images) {
      arrange(img, r, cap, heads, dim);
      img.view.length = cap;
      for (index_t head = 0; head < heads; ++head)
        for (index_t tok = 0; tok < cap; ++tok) {
          img.view.meta_at(tok, head).index = tok;
          for (index_t d = 0; d < dim; ++d) img.view.k[img.view.mapping(tok, head) + d] = static_cast<T>(r.normal());
        }
      views.push_back(img.view);
      budgets.push_back(4);
    }
  }
  dev::compress_batch<T, Layout> batch() { return {views, budgets}; }
  std::vector<std::vector<T>> snapshot() const {
    std::vector<std::vector<T>> s;
    for (const auto& img : images) s.push_back(img.k), s.push_back(img.v);
    return s;
  }
};

constexpr dev::compress_policies<scorers::key_norm> key_norm_policies{};

dev::status run_reference(dev::compress_batch<float, layouts::nhd> b) {
  std::size_t bytes = 0;
  if (const auto s = dev::reference::compress(nullptr, bytes, b, key_norm_policies); !s) return s;
  std::vector<std::byte> temp(bytes);
  return dev::reference::compress(temp.data(), bytes, b, key_norm_policies);
}

}  // namespace

TEST_CASE("invalid batches are refused with the argument named, and nothing moves") {
  const auto expect_refused = [](small_batch<>& sb, dev::compress_batch<float, layouts::nhd> b, dev::errc code,
                                 std::string argument, index_t at,
                                 index_t expected = refusal::any_expected) {
    const auto before = sb.snapshot();
    const dev::status s = run_reference(b);
    CHECK(s.code == code);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == at);
    CHECK(sb.snapshot() == before);
    if (expected != refusal::any_expected) CHECK(s.expected == expected);
  };
  {
    small_batch sb(refusal_views);  // the batch every case edits is valid as it is
    REQUIRE(run_reference(sb.batch()).ok());
  }
  for (const auto& c : refusal_cases<float, layouts::nhd>()) {  // shared with the device executor's test
    INFO(std::string(c.expect.edit));
    small_batch sb(refusal_views);
    refusal_batch<float, layouts::nhd> edited{sb.views, sb.budgets};
    c.apply(edited);
    expect_refused(sb, edited.batch(), c.expect.code, c.expect.argument, c.expect.at, c.expect.expected);
  }
  {
    small_batch<float, layouts::paged_nhd> sb(2);
    sb.views[1].mapping.page_size = 0;
    std::size_t bytes = 0;
    const auto s = dev::reference::compress(nullptr, bytes, sb.batch(), key_norm_policies);
    CHECK(s.code == dev::errc::invalid_argument);
    CHECK(std::string(s.argument) == "views[].mapping.page_size");
  }
  if constexpr (requires { layer_view<float, layouts::nhd>{}.head_lengths; }) {  // per-head lengths on the view
    small_batch sb(2);
    const index_t lengths[2] = {10, 9};
    sb.views[1].head_lengths = lengths;
    expect_refused(sb, sb.batch(), dev::errc::invalid_argument, "views[].head_lengths (pass them as batch.head_lengths)", 1);
  }
  {  // a workspace below the size query's answer
    small_batch sb(2);
    std::size_t bytes = 0;
    REQUIRE(dev::reference::compress(nullptr, bytes, sb.batch(), key_norm_policies).ok());
    std::vector<std::byte> temp(bytes);
    std::size_t short_bytes = bytes - 1;
    const auto before = sb.snapshot();
    const auto s = dev::reference::compress(temp.data(), short_bytes, sb.batch(), key_norm_policies);
    CHECK(s.code == dev::errc::workspace_too_small);
    CHECK(s.expected == static_cast<index_t>(bytes));
    CHECK(sb.snapshot() == before);
  }
  {  // more protected tokens than the budget: found in the metadata, nothing moves
    small_batch sb(3);
    for (index_t tok = 0; tok < 5; ++tok) sb.views[1].meta_at(tok + 3, 1).is_protected = true;
    const auto before = sb.snapshot();
    std::vector<token_meta> meta_before(sb.images[1].meta);
    const dev::status s = run_reference(sb.batch());
    CHECK(s.code == dev::errc::budget_below_protected);
    CHECK(s.at == 3);  // view 1, head 1
    CHECK(s.expected == 5);
    CHECK(s.received == 4);
    CHECK(sb.snapshot() == before);
    CHECK(sb.images[1].meta == meta_before);
  }
  {  // logical indices that do not increase along a head
    small_batch sb(2);
    sb.views[1].meta_at(6, 0).index = 5;
    const auto before = sb.snapshot();
    const dev::status s = run_reference(sb.batch());
    CHECK(s.code == dev::errc::meta_out_of_order);
    CHECK(s.at == 2);
    CHECK(s.expected == 6);
    CHECK(s.received == 5);
    CHECK(sb.snapshot() == before);
  }
  {  // metadata that is not what the structure declares: an image token in a text sequence
    small_batch sb(2);
    sb.views[1].meta_at(6, 0).kind = segment_kind::image;
    const auto before = sb.snapshot();
    const dev::status s = run_reference(sb.batch());
    CHECK(s.code == dev::errc::meta_out_of_structure);
    CHECK(s.at == 2);
    CHECK(s.received == 6);
    CHECK(sb.snapshot() == before);
  }
  {  // a video token whose row is not its index's (frames of 2 × 3 tokens)
    small_batch sb(2);
    const structures::temporal_frames frames{.frames = 4, .rows = 2, .cols = 3};
    for (auto& view : sb.views)
      for (index_t head = 0; head < 2; ++head)
        for (index_t tok = 0; tok < 10; ++tok) view.meta_at(tok, head) = frames.meta(tok);
    const dev::compress_policies<scorers::key_norm, structures::temporal_frames> policies{{}, frames};
    std::size_t bytes = 0;
    REQUIRE(dev::reference::compress(nullptr, bytes, sb.batch(), policies).ok());
    std::vector<std::byte> temp(bytes);
    sb.views[0].meta_at(8, 1).row = 1 - frames.meta(8).row;  // the other row of its frame
    // (consistent metadata passes: the randomized cases over temporal_frames, below)
    const auto before = sb.snapshot();
    const dev::status s = dev::reference::compress(temp.data(), bytes, sb.batch(), policies);
    CHECK(s.code == dev::errc::meta_out_of_structure);
    CHECK(s.at == 1);
    CHECK(s.received == 8);
    CHECK(sb.snapshot() == before);
  }
  {  // empty batch: fine, nothing to do
    dev::compress_batch<float, layouts::nhd> b{};
    CHECK(run_reference(b).ok());
  }
}

TEST_CASE("NaN and Inf in the checked slots' K and V are found, and nothing moves") {
  // 3 views of 10 slots, 2 heads of 3 dims, budget 4 (view 2: budget 10, nothing to drop).
  const auto expect_not_finite = [](small_batch<>& sb, dev::compress_batch<float, layouts::nhd> b, std::string argument,
                                    index_t at, index_t slot) {
    const auto before = sb.snapshot();
    const std::vector<token_meta> meta_before(sb.images[0].meta);
    const dev::status s = run_reference(b);
    CHECK(s.code == dev::errc::not_finite);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == at);
    CHECK(s.received == slot);
    const auto now = sb.snapshot();  // bit for bit: NaN compares unequal to itself
    REQUIRE(now.size() == before.size());
    for (std::size_t i = 0; i < now.size(); ++i)
      CHECK(std::memcmp(now[i].data(), before[i].data(), now[i].size() * sizeof(float)) == 0);
    CHECK(sb.images[0].meta == meta_before);
  };
  const std::string k = "views[].k (finite values; at: segment, received: slot)";
  const std::string v = "views[].v (finite values; at: segment, received: slot)";
  const auto k_at = [](small_batch<>& sb, index_t view, index_t tok, index_t head, index_t d) -> float& {
    return sb.views[view].k[sb.views[view].mapping(tok, head) + d];
  };
  const auto v_at = [](small_batch<>& sb, index_t view, index_t tok, index_t head, index_t d) -> float& {
    return sb.views[view].v[sb.views[view].mapping(tok, head) + d];
  };
  {
    small_batch sb(3);
    sb.budgets[2] = 10;
    k_at(sb, 1, 7, 0, 2) = std::numeric_limits<float>::quiet_NaN();
    expect_not_finite(sb, sb.batch(), k, 2, 7);  // segment 2: view 1, head 0
  }
  {
    small_batch sb(3);
    sb.budgets[2] = 10;
    v_at(sb, 0, 0, 1, 0) = -std::numeric_limits<float>::infinity();
    expect_not_finite(sb, sb.batch(), v, 1, 0);
  }
  {  // a view with nothing to drop is checked too, as the host checks every appended chunk
    small_batch sb(3);
    sb.budgets[2] = 10;
    v_at(sb, 2, 9, 1, 1) = std::numeric_limits<float>::infinity();
    expect_not_finite(sb, sb.batch(), v, 5, 9);
  }
  {  // with `appended`, only each head's last appended slots are checked
    small_batch sb(3);
    std::vector<index_t> appended{3, 3, 0};
    auto b = sb.batch();
    b.appended = appended;
    k_at(sb, 1, 7, 1, 0) = std::numeric_limits<float>::quiet_NaN();  // slot 7 of 10: among the last 3
    expect_not_finite(sb, b, k, 3, 7);
    k_at(sb, 1, 7, 1, 0) = 1.f;
    k_at(sb, 1, 6, 1, 0) = std::numeric_limits<float>::quiet_NaN();  // slot 6: written before, not checked
    k_at(sb, 2, 9, 0, 0) = std::numeric_limits<float>::quiet_NaN();  // view 2 appended nothing
    CHECK(run_reference(b).ok());
  }
  {  // per-head lengths: the last appended slots of each head
    small_batch sb(2);
    std::vector<index_t> head_lengths{10, 6, 10, 10}, appended{2, 0};
    auto b = sb.batch();
    b.head_lengths = head_lengths, b.appended = appended;
    v_at(sb, 0, 4, 1, 2) = std::numeric_limits<float>::quiet_NaN();  // head 1 holds 6: slots 4 and 5 are checked
    expect_not_finite(sb, b, v, 1, 4);
  }
}

TEST_CASE("a failure log keeps the first device-side failure until the caller clears it") {
  dev::device_report log{};
  {
    small_batch sb(2);
    auto b = sb.batch();
    b.failure_log = &log;
    CHECK(run_reference(b).ok());
    CHECK(log.code == 0);
  }
  {
    small_batch sb(2);
    sb.views[1].v[sb.views[1].mapping(6, 0) + 1] = std::numeric_limits<float>::infinity();  // segment 2, slot 6
    auto b = sb.batch();
    b.failure_log = &log;
    CHECK(run_reference(b).code == dev::errc::not_finite);
  }
  {
    small_batch sb(2);
    sb.images[0].view.meta_at(5, 1).index = 1;  // segment 1: backwards at slot 5
    auto b = sb.batch();
    b.failure_log = &log;
    CHECK(run_reference(b).code == dev::errc::meta_out_of_order);  // the call's own status
  }
  const dev::status first = dev::to_status(log);
  CHECK(first.code == dev::errc::not_finite);
  CHECK(std::string(first.argument) == "views[].v (finite values; at: segment, received: slot)");
  CHECK(first.at == 2);
  CHECK(first.received == 6);
}

TEST_CASE("budget 0 empties a segment; a protected token there is one too many") {
  small_batch sb(3);
  sb.budgets = {0, 4, 0};
  sb.images[2].view.length = sb.views[2].length = 0;  // and an empty one stays empty
  std::vector<index_t> out(3, -1);
  auto b = sb.batch();
  b.lengths_out = out;
  REQUIRE(run_reference(b).ok());
  CHECK(out == std::vector<index_t>{0, 4, 0});
  sb.views[0].meta_at(5, 1).is_protected = true;
  const auto before = sb.snapshot();
  const dev::status s = run_reference(sb.batch());
  CHECK(s.code == dev::errc::budget_below_protected);
  CHECK(s.at == 1);
  CHECK(s.expected == 1);
  CHECK(s.received == 0);
  CHECK(sb.snapshot() == before);
}

TEST_CASE("a workspace may start at any address: its carve starts at the next 256-byte boundary") {
  small_batch aligned(3);
  std::size_t bytes = 0;
  REQUIRE(dev::reference::compress(nullptr, bytes, aligned.batch(), key_norm_policies).ok());
  std::vector<std::byte> temp(bytes + 256);
  const auto base = reinterpret_cast<std::uintptr_t>(temp.data());
  std::byte* const at_boundary = temp.data() + (256 - base % 256) % 256;
  REQUIRE(dev::reference::compress(at_boundary, bytes, aligned.batch(), key_norm_policies).ok());
  for (const std::size_t offset : {1, 4, 8, 255}) {  // a base off the boundary, with exactly the queried bytes
    small_batch moved(3);
    REQUIRE(dev::reference::compress(at_boundary + offset, bytes, moved.batch(), key_norm_policies).ok());
    CHECK(moved.snapshot() == aligned.snapshot());
    for (std::size_t i = 0; i < 3; ++i) CHECK(moved.images[i].meta == aligned.images[i].meta);
  }
  CHECK(dev::workspace_base(at_boundary + 1) == at_boundary + 256);
  CHECK(dev::workspace_base(at_boundary) == at_boundary);
}

TEST_CASE("window scorers: bad windows are refused with the argument named, and nothing moves") {
  // 3 views of 10 tokens, 2 kv-heads of 3 dims, budget 4; windows of 3 queries × 4 query heads.
  using window_t = kv_tensor<const float>;
  const dev::compress_policies<scorers::observation_window> policies{};
  std::vector<float> queries(static_cast<std::size_t>(11 * 4 * 3), 0.5f);
  const window_t good{queries.data(), 3, 4, 3};
  const auto run = [&](small_batch<>& sb, std::vector<window_t> windows, bool causal = true) {
    auto b = sb.batch();
    b.windows = windows, b.window_is_chunk_tail = causal;
    const auto before = sb.snapshot();
    std::size_t bytes = 0;
    dev::status s = dev::reference::compress(nullptr, bytes, b, policies);
    if (s) {
      std::vector<std::byte> temp(bytes);
      s = dev::reference::compress(temp.data(), bytes, b, policies);
    }
    if (!s) CHECK(sb.snapshot() == before);
    return s;
  };
  const auto refused = [&](std::vector<window_t> windows, dev::errc code, std::string argument, index_t at,
                           bool causal = true) {
    small_batch sb(3);
    const dev::status s = run(sb, windows, causal);
    CHECK(s.code == code);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == at);
  };
  {
    small_batch sb(3);
    CHECK(run(sb, {good, good, good}).ok());
  }
  refused({good, good}, dev::errc::invalid_argument, "windows.size() (a window scorer needs one window per view)", -1);
  window_t odd = good;
  odd.num_heads = 3;
  refused({odd, good, good}, dev::errc::shape_mismatch, "windows[].num_heads (a positive multiple of num_kv_heads)", 0);
  refused({good, odd, good}, dev::errc::shape_mismatch, "windows[].num_heads", 1);
  window_t wide = good;
  wide.head_dim = 4;
  refused({good, good, wide}, dev::errc::shape_mismatch, "windows[].head_dim", 2);
  // Sizes whose element count would wrap: refused before the product is formed.
  window_t many_heads = good;
  many_heads.num_heads = dev::max_plan_items / 2;  // a multiple of the 2 kv-heads, × 3 dims is past the limit
  refused({many_heads, good, good}, dev::errc::capacity_exceeded, "windows[].num_heads (heads × head_dim)", 0);
  window_t many_tokens = good;
  many_tokens.num_tokens = dev::max_plan_items / 4;  // × 4 heads × 3 dims
  refused({good, good, many_tokens}, dev::errc::capacity_exceeded, "windows[].num_tokens (tokens × heads × head_dim)", 2);
  window_t null_data = good;
  null_data.data = nullptr;
  refused({good, null_data, good}, dev::errc::invalid_argument, "windows[].num_tokens (>= 1 query, at non-null data)", 1);
  refused({window_t{}, good, good}, dev::errc::invalid_argument, "windows[] (a window for a view with tokens to drop)", 0);
  {  // NaN or Inf in a window, in either order: the query named, nothing moves
    std::vector<float> bad(queries);
    bad[(2 * 4 + 1) * 3 + 2] = std::numeric_limits<float>::infinity();  // NHD: query 2, head 1, dim 2
    const window_t nan_window{bad.data(), 3, 4, 3};
    const std::string argument = "windows[] (finite values; at: view, received: query)";
    small_batch sb(3);
    const dev::status s = run(sb, {good, nan_window, good});
    CHECK(s.code == dev::errc::not_finite);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == 1);
    CHECK(s.received == 2);
    window_t hnd = nan_window;
    hnd.order = kv_layout::hnd;  // element (2·4 + 1)·3 + 2 = 29 is head 3, query 0, dim 2 in HND
    small_batch sb2(3);
    const dev::status h = run(sb2, {good, good, hnd});
    CHECK(h.code == dev::errc::not_finite);
    CHECK(h.at == 2);
    CHECK(h.received == 0);
  }
  window_t long_tail = good;
  long_tail.num_tokens = 11;  // more queries than resident tokens: not the chunk's tail
  refused({good, long_tail, good}, dev::errc::shape_mismatch,
          "windows[].num_tokens (<= resident tokens: the chunk's tail)", 1);
  {
    small_batch sb(3);  // a proxy window (the question) may be longer than the cache
    CHECK(run(sb, {good, long_tail, good}, false).ok());
  }
  {
    small_batch sb(3);  // a view with nothing to drop needs no window
    sb.budgets[2] = 10;
    CHECK(run(sb, {good, good, window_t{}}).ok());
  }
}

TEST_CASE("the plan lays active segments end to end") {
  small_batch sb(3, 10, 2, 3);
  std::vector<index_t> head_lengths{10, 4, 0, 7, 9, 10}, head_budgets{4, 4, 4, 5, 9, 1};
  auto b = sb.batch();
  b.head_lengths = head_lengths;
  b.head_budgets = head_budgets;
  dev::plan_totals p;
  REQUIRE(dev::plan(b, p).ok());
  CHECK(p.num_segments == 6);
  CHECK(p.active_segments == 3);  // segments 0, 3, 5
  CHECK(p.tokens == 10 + 7 + 10);
  std::size_t bytes = 0;
  REQUIRE(dev::workspace_bytes<float, layouts::nhd>(p, {}, bytes).ok());
  std::vector<std::byte> temp(bytes);
  workspace_carver w(temp.data());
  const auto ws = dev::carve<float, layouts::nhd>(w, p, {});
  std::memcpy(ws.views, sb.views.data(), sb.views.size() * sizeof(sb.views[0]));
  std::memcpy(ws.head_lengths, head_lengths.data(), 6 * sizeof(index_t));
  std::memcpy(ws.head_budgets, head_budgets.data(), 6 * sizeof(index_t));
  dev::reference::plan_segments(ws, p);
  CHECK(ws.segments[0].view == 0);
  CHECK(ws.segments[0].head == 0);
  CHECK(ws.segments[1].view == 1);
  CHECK(ws.segments[1].head == 1);
  CHECK(ws.segments[2].view == 2);
  CHECK(ws.segments[2].head == 1);
  CHECK(ws.segments[2].keep == 1);
  CHECK(ws.token_indptr[0] == 0);
  CHECK(ws.token_indptr[1] == 10);
  CHECK(ws.token_indptr[2] == 17);
  CHECK(ws.token_indptr[3] == 27);
  const index_t t = p.tile_tokens;
  CHECK(ws.tile_indptr[3] == p.tiles);
  CHECK(p.tiles == (10 + t - 1) / t + (7 + t - 1) / t + (10 + t - 1) / t);
}

TEST_CASE("the workspace bound refuses limits out of range, and sizes past std::size_t, by name") {
  const auto refused = [](dev::workspace_limits limits, dev::errc code, std::string argument, index_t expected) {
    std::size_t bytes = 12345;
    const dev::status s = dev::workspace_bound<float, layouts::nhd, scorers::key_diff, reducers::merge>(limits, bytes);
    CHECK(s.code == code);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.expected == expected);
    CHECK(bytes == 12345);  // left as it was
  };
  const dev::workspace_limits fine{.max_views = 4, .num_kv_heads = 8, .head_dim = 128, .max_capacity = 4096 + 784};
  std::size_t bytes = 0;
  REQUIRE(dev::workspace_bound<float, layouts::nhd, scorers::key_diff, reducers::merge>(fine, bytes).ok());
  CHECK(bytes > static_cast<std::size_t>(4 * 8 * (4096 + 784)) * sizeof(std::uint64_t));  // a rank key a token, at least

  const index_t widest = dev::max_head_dim_for(sizeof(float));
  auto limits = fine;
  limits.max_views = -1;
  refused(limits, dev::errc::invalid_argument, "limits.max_views", 0);
  limits = fine, limits.num_kv_heads = 0;
  refused(limits, dev::errc::invalid_argument, "limits.num_kv_heads", 1);
  limits = fine, limits.head_dim = 0;
  refused(limits, dev::errc::invalid_argument, "limits.head_dim (in [1, widest])", widest);
  limits = fine, limits.head_dim = widest + 1;
  refused(limits, dev::errc::invalid_argument, "limits.head_dim (in [1, widest])", widest);
  limits = fine, limits.max_capacity = dev::max_segment_slots;
  refused(limits, dev::errc::capacity_exceeded, "limits.max_capacity", dev::max_segment_slots - 1);
  limits = fine, limits.max_window_rows = -1;
  refused(limits, dev::errc::invalid_argument, "limits.max_window_rows", 0);
  // Products that would wrap index_t are refused before they are formed.
  limits = fine, limits.max_views = index_t{1} << 40, limits.num_kv_heads = index_t{1} << 30;
  refused(limits, dev::errc::capacity_exceeded, "limits.max_views (views × kv heads)", dev::max_plan_items >> 30);
  limits = fine, limits.max_views = index_t{1} << 20, limits.num_kv_heads = index_t{1} << 20,
  limits.max_capacity = index_t{1} << 30;
  refused(limits, dev::errc::capacity_exceeded, "limits.max_capacity (views × kv heads × capacity)",
          dev::max_plan_items >> 40);
  // Under 2^61 tokens, but 8 bytes of rank key each, with the rest of the carve, pass 2^64.
  limits = fine, limits.max_views = index_t{1} << 28, limits.num_kv_heads = 4, limits.max_capacity = dev::max_segment_slots - 1;
  refused(limits, dev::errc::capacity_exceeded, "workspace bytes (fit in std::size_t)", 1);
  // Window rows whose statistics (2 · segments · rows floats) pass index_t: the carve's own
  // product is checked (UBSan would flag a wrapped one).
  limits = fine, limits.max_window_rows = std::numeric_limits<index_t>::max() / 4;
  std::size_t window_bytes = 7;
  const dev::status s = dev::workspace_bound<float, layouts::nhd, scorers::observation_window>(limits, window_bytes);
  CHECK(s.code == dev::errc::capacity_exceeded);
  CHECK(std::string(s.argument) == "workspace bytes (fit in std::size_t)");
  CHECK(window_bytes == 7);
}

TEST_CASE("byte counts in a status saturate at index_t's largest") {
  constexpr index_t most = std::numeric_limits<index_t>::max();
  CHECK(dev::bytes_value(0) == 0);
  CHECK(dev::bytes_value(4096) == 4096);
  CHECK(dev::bytes_value(static_cast<std::size_t>(most)) == most);
  CHECK(dev::bytes_value(static_cast<std::size_t>(most) + 1) == most);
  CHECK(dev::bytes_value(~std::size_t{0}) == most);
}

// A bound is a constant expression: an engine may size a static arena with it.
constexpr std::size_t constant_bound = [] {
  std::size_t bytes = 0;
  const dev::status s = dev::workspace_bound<float, layouts::nhd, scorers::key_norm>(
      {.max_views = 8, .num_kv_heads = 8, .head_dim = 128, .max_capacity = 4096 + 784}, bytes);
  return s.ok() ? bytes : 0;
}();
static_assert(constant_bound > 0);

TEST_CASE("the workspace bound covers every call within the limits") {
  rng r(5);
  for (int c = 0; c < 500; ++c) {
    const dev::workspace_limits limits{.max_views = r.between(1, 5), .num_kv_heads = r.between(1, 4),
                                       .head_dim = r.between(1, 64), .max_capacity = r.between(1, 300),
                                       .share_heads = r.chance(0.5)};
    std::size_t bound = 0, merge_bound = 0;
    REQUIRE(dev::workspace_bound<float, layouts::nhd, scorers::key_diff>(limits, bound).ok());
    REQUIRE(dev::workspace_bound<float, layouts::nhd, scorers::key_diff, reducers::merge>(limits, merge_bound).ok());
    dev::plan_totals p;
    p.num_views = r.between(0, limits.max_views);
    p.num_kv_heads = limits.num_kv_heads;
    p.head_dim = limits.head_dim;
    p.num_segments = p.num_views * p.num_kv_heads;
    p.active_segments = r.between(0, p.num_segments);
    p.tile_tokens = dev::tile_tokens_for(p.head_dim, 4);
    for (index_t a = 0; a < p.active_segments; ++a) {
      const index_t n = r.between(1, limits.max_capacity);
      p.tokens += n;
      p.tiles += (n + p.tile_tokens - 1) / p.tile_tokens;
    }
    p.head_lengths = r.chance(0.5);
    p.head_budgets = r.chance(0.5);
    p.share.on = limits.share_heads && r.chance(0.5);  // a call may share within limits that allow it
    std::size_t bytes = 0, merge_bytes = 0;
    REQUIRE(dev::workspace_bytes<float, layouts::nhd>(p, dev::needs_of<scorers::key_diff>, bytes).ok());
    REQUIRE(dev::workspace_bytes<float, layouts::nhd>(p, dev::needs_of<scorers::key_diff, reducers::merge>, merge_bytes).ok());
    CHECK(bytes <= bound);
    CHECK(merge_bytes <= merge_bound);
  }
}

namespace {

/// One randomized batch: host executors per request, their caches copied into other
/// arrangements of the same layout, one reference call over the whole batch, compared with
/// each host executor's own compress.
struct case_limits {
  index_t max_heads = 4, max_requests = 5, max_budget = 40, max_chunk = 30, min_dim = 1, max_dim = 9;
};

/// Window scores (pooled attention masses, at most 1) the device may round differently.
constexpr float window_score_tolerance = 1e-5f;

/// What a case saw: slots standing for more than one token afterwards (merged), and kept-set
/// swaps between near-tied tokens (window scorers).
struct case_counts {
  index_t merged_slots = 0, near_ties = 0;
  case_counts& operator+=(const case_counts& o) { return merged_slots += o.merged_slots, near_ties += o.near_ties, *this; }
};

template <class Layout, class Scorer, class Reducer = reducers::evict>
case_counts reference_matches_host(rng& r, const case_limits& limits = {}) {
  using T = float;
  using Structure = structure_for<Scorer>;
  constexpr bool windowed = Scorer::inputs.window_mass;
  const index_t heads = r.between(1, limits.max_heads), dim = r.between(limits.min_dim, limits.max_dim),
                num_requests = r.between(1, limits.max_requests);
  const index_t group = windowed ? r.between(1, 4) : 1;  // GQA
  const bool causal = !windowed || r.chance(0.7);
  const dev::compress_policies<Scorer, Structure, Reducer> policies{make_scorer<Scorer>(r), make_structure<Structure>(r)};
  std::vector<host_request<T, Layout, Scorer, Structure, Reducer>> requests(static_cast<std::size_t>(num_requests));
  std::vector<host_image<T, Layout>> images(static_cast<std::size_t>(num_requests));
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets, lengths_out(static_cast<std::size_t>(num_requests), -1), appended;
  std::vector<kv_tensor<const T>> windows;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    q.drive(r, heads, dim, policies.scorer, policies.structure, limits.max_budget, limits.max_chunk, group, causal);
    appended.push_back(q.last_chunk);
    const auto& host_view = q.c->layer(0);
    arrange(images[i], r, host_view.capacity(), heads, dim);
    const std::vector<index_t> lengths(static_cast<std::size_t>(heads), host_view.length);
    copy_tokens(host_view, images[i].view, lengths);
    images[i].view.length = host_view.length;
    views.push_back(images[i].view);
    budgets.push_back(q.budget);
    q.next_window(r);
    windows.push_back(q.window);
  }
  dev::compress_batch<T, Layout> batch{views, budgets};
  batch.lengths_out = lengths_out;
  if (windowed) batch.windows = windows, batch.window_is_chunk_tail = causal;
  if ((num_requests + heads) % 2 == 0) batch.appended = appended;  // else every resident slot is checked
  std::vector<host_image<T, Layout>> untouched(images.size());  // the whole storage before
  for (std::size_t i = 0; i < images.size(); ++i) clone(images[i], untouched[i]);
  std::size_t bytes = 0;
  REQUIRE(dev::reference::compress(nullptr, bytes, batch, policies).ok());
  std::vector<std::byte> temp(bytes);
  REQUIRE(dev::reference::compress(temp.data(), bytes, batch, policies).ok());
  case_counts counts;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    const auto& host_view = q.c->layer(0);
    const auto sizes = [&](index_t head) {
      index_t sum = 0;
      for (index_t tok = 0; tok < host_view.length; ++tok) sum += host_view.meta_at(tok, head).size;
      return sum;
    };
    std::vector<index_t> sizes_before;
    for (index_t head = 0; head < heads; ++head) sizes_before.push_back(sizes(head));
    // Window scorers: the cache and the host's scores before it compresses, for near-ties.
    host_image<T, Layout> before;
    const auto scores = window_scores_before_compress(q, policies, causal);
    const std::vector<index_t> lengths_before(static_cast<std::size_t>(heads), host_view.length);
    if (!scores.empty()) {
      arrange(before, r, host_view.capacity(), heads, dim);
      copy_tokens(host_view, before.view, lengths_before);
      before.view.length = host_view.length;
    }
    q.compress();
    REQUIRE(lengths_out[i] == host_view.length);
    const std::vector<index_t> lengths(static_cast<std::size_t>(heads), host_view.length);
    INFO(std::string(layout_name<Layout>()), " request ", i, " of ", num_requests, ", mode ", static_cast<int>(q.mode),
         ", dim ", dim);
    index_t near_ties = 0;
    if (scores.empty()) {
      REQUIRE(compare_tokens(host_view, images[i].view, lengths) == "");
    } else {
      REQUIRE(compare_kept_near_ties(before.view, lengths_before, scores, host_view, lengths, images[i].view, lengths,
                                     false, window_score_tolerance, near_ties) == "");
      counts.near_ties += near_ties;
    }
    if (near_ties == 0) {  // and nothing else written: other heads, pages, gaps, what is left behind
      host_image<T, Layout> expected;
      clone(untouched[i], expected);
      copy_tokens(host_view, expected.view, lengths);
      add_left_behind_rows(untouched[i].view, lengths_before, host_view, lengths, expected.view);
      REQUIRE(compare_storage(expected, images[i]) == "");
    }
    for (index_t head = 0; head < heads; ++head) {
      if constexpr (Reducer::merges) REQUIRE(sizes(head) == sizes_before[head]);  // a merge loses no token
      for (index_t tok = 0; tok < host_view.length; ++tok) counts.merged_slots += host_view.meta_at(tok, head).size > 1;
    }
  }
  return counts;
}

template <class Layout, class... Scorers>
void each_scorer(rng& r, int cases) {
  for (int c = 0; c < cases; ++c) (reference_matches_host<Layout, Scorers>(r), ...);
}

using blend_norms = scorers::blend<scorers::key_norm, scorers::value_norm>;

}  // namespace

TEST_CASE_TEMPLATE("the reference device algorithm keeps what the host executor keeps", Layout, layouts::nhd,
                   layouts::hnd, layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  rng r(100 + static_cast<std::uint64_t>(Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>);
  // 10 scorers × 100 batches (≈ 3 requests each) per layout
  each_scorer<Layout, scorers::key_norm, scorers::value_norm, scorers::recency, scorers::key_diff,
              scorers::forced_keep<scorers::key_diff>, scorers::temporal_redundancy, scorers::spatial_redundancy,
              scorers::pooled_value_norm, blend_norms, scorers::forced_keep<blend_norms>>(r, 100);
}

TEST_CASE_TEMPLATE("long segments: many compaction tiles, destinations across tiles", Layout, layouts::nhd,
                   layouts::paged_nhd, layouts::varlen) {
  // float rows of 64 to 128 dims: 32- to 64-slot tiles; up to 3800 slots a segment.
  rng r(300);
  const case_limits limits{.max_heads = 3, .max_requests = 3, .max_budget = 3000, .max_chunk = 800, .min_dim = 64,
                           .max_dim = 128};
  for (int c = 0; c < 4; ++c) {
    reference_matches_host<Layout, scorers::key_norm>(r, limits);
    reference_matches_host<Layout, scorers::recency>(r, limits);
    reference_matches_host<Layout, scorers::key_diff>(r, limits);
  }
}

TEST_CASE_TEMPLATE("the reference device algorithm merges what the host executor merges", Layout, layouts::nhd,
                   layouts::hnd, layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  // K, V and sizes compared bit for bit after several append + compress rounds (merged slots
  // merge again); frames give the merge its structure neighbours (spatial_redundancy), a
  // sequence only the slots before and after (key_norm, recency).
  rng r(400 + static_cast<std::uint64_t>(Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>);
  case_counts counts;
  for (int c = 0; c < 100; ++c) {
    counts += reference_matches_host<Layout, scorers::key_norm, reducers::merge>(r);
    counts += reference_matches_host<Layout, scorers::recency, reducers::merge>(r);
    counts += reference_matches_host<Layout, scorers::spatial_redundancy, reducers::merge>(r);
    counts += reference_matches_host<Layout, scorers::key_diff, reducers::merge>(r);
  }
  const case_limits long_limits{.max_heads = 2, .max_requests = 2, .max_budget = 1500, .max_chunk = 600, .min_dim = 64,
                                .max_dim = 128};
  for (int c = 0; c < 2; ++c)
    counts += reference_matches_host<Layout, scorers::spatial_redundancy, reducers::merge>(r, long_limits);
  MESSAGE(counts.merged_slots, " merged slots after the calls");
  CHECK(counts.merged_slots > 1000);  // the merge did fold tokens, many times
}

TEST_CASE_TEMPLATE("the reference device algorithm keeps what the host keeps by window attention (to near-ties)",
                   Layout, layouts::nhd, layouts::hnd, layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  // SnapKV's observation window: causal chunk tails and free-standing proxies, GQA groups 1-4,
  // windows of 1-8 queries, pooling radius 0-3, value modes with exact ties (small integers,
  // duplicates). The device's window mass is not the host's bit for bit (exp, summation
  // order), so kept sets may differ only between near-tied tokens; every kept row must be
  // intact and in order.
  rng r(500 + static_cast<std::uint64_t>(Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>);
  case_counts counts;
  for (int c = 0; c < 150; ++c) counts += reference_matches_host<Layout, scorers::observation_window>(r);
  const case_limits long_limits{.max_heads = 2, .max_requests = 2, .max_budget = 1500, .max_chunk = 600, .min_dim = 64,
                                .max_dim = 128};
  for (int c = 0; c < 3; ++c) counts += reference_matches_host<Layout, scorers::observation_window>(r, long_limits);
  MESSAGE(counts.near_ties, " near-tie swaps");
}

namespace {

template <class Layout, class Scorer>
void per_head_matches_oracle(rng& r) {
  using T = float;
  using Structure = structure_for<Scorer>;
  const index_t heads = r.between(1, 4), dim = r.between(1, 6), num_views = r.between(1, 4);
  const dev::compress_policies<Scorer, Structure> policies{make_scorer<Scorer>(r), make_structure<Structure>(r)};
  std::vector<host_image<T, Layout>> images(static_cast<std::size_t>(num_views)), expected(images.size());
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> head_lengths, head_budgets, head_out(static_cast<std::size_t>(num_views * heads), -1),
      lengths_out(static_cast<std::size_t>(num_views), -1);
  for (index_t i = 0; i < num_views; ++i) {
    const index_t capacity = r.between(1, 60);
    rng copy = r;  // same arrangement for the image and its expectation
    arrange(images[i], r, capacity, heads, dim);
    arrange(expected[i], copy, capacity, heads, dim);
    const auto mode = static_cast<values>(r.between(0, 3));
    for (index_t head = 0; head < heads; ++head) {
      const index_t length = r.between(0, capacity);
      head_lengths.push_back(length);
      index_t index = 0, num_protected = 0;
      for (index_t tok = 0; tok < length; ++tok) {
        index += r.between(1, 2);
        token_meta m = policies.structure.meta(index);
        m.is_protected = r.chance(0.1);
        num_protected += m.is_protected;
        images[i].view.meta_at(tok, head) = m;
        T* k = images[i].view.k + images[i].view.mapping(tok, head);
        T* v = images[i].view.v + images[i].view.mapping(tok, head);
        const T* prev = tok > 0 ? images[i].view.k + images[i].view.mapping(tok - 1, head) : nullptr;
        for (index_t d = 0; d < dim; ++d) k[d] = draw<T>(r, mode, prev, d), v[d] = draw<T>(r, mode, nullptr, d);
      }
      head_budgets.push_back(r.between(std::max<index_t>(1, num_protected), capacity + 2));
    }
    images[i].view.length = 0;  // ignored: head_lengths rule
    copy_tokens(images[i].view, expected[i].view, std::span(head_lengths).subspan(i * heads, heads));
    for (index_t head = 0; head < heads; ++head)
      oracle_compress_head(expected[i].view, head, head_lengths[i * heads + head], head_budgets[i * heads + head],
                           policies.scorer, policies.structure);
    views.push_back(images[i].view);
  }
  dev::compress_batch<T, Layout> batch{views, {}, head_lengths, head_budgets, lengths_out, head_out};
  std::size_t bytes = 0;
  REQUIRE(dev::reference::compress(nullptr, bytes, batch, policies).ok());
  std::vector<std::byte> temp(bytes);
  REQUIRE(dev::reference::compress(temp.data(), bytes, batch, policies).ok());
  for (index_t i = 0; i < num_views; ++i) {
    index_t longest = 0;
    for (index_t head = 0; head < heads; ++head) {
      const index_t s = i * heads + head;
      REQUIRE(head_out[s] == std::min(head_lengths[s], head_budgets[s]));
      longest = std::max(longest, head_out[s]);
    }
    REQUIRE(lengths_out[i] == longest);
    REQUIRE(compare_tokens(expected[i].view, images[i].view, std::span(head_out).subspan(i * heads, heads)) == "");
  }
}

}  // namespace

TEST_CASE_TEMPLATE("per-head lengths and budgets keep what a full sort by ranks_before keeps", Layout, layouts::nhd,
                   layouts::paged_hnd, layouts::varlen) {
  rng r(200);
  for (int c = 0; c < 150; ++c) {
    per_head_matches_oracle<Layout, scorers::key_norm>(r);
    per_head_matches_oracle<Layout, scorers::value_norm>(r);
    per_head_matches_oracle<Layout, scorers::recency>(r);
    per_head_matches_oracle<Layout, scorers::key_diff>(r);
    per_head_matches_oracle<Layout, scorers::spatial_redundancy>(r);
    per_head_matches_oracle<Layout, blend_norms>(r);
  }
}

TEST_CASE("the device algorithm's window mass is the host's to float rounding, and sums to 1") {
  // One view, every head compressed; the masses read back from the reference's workspace and
  // compared with host::window_mass of the same cache and window. Half the cases give the
  // heads their own lengths, and a causal window may then be longer than a short head (its
  // queries before the head's first slot see nothing: core/window_rows.hpp).
  using T = float;
  rng r(600);
  double worst = 0;
  int short_heads = 0;
  for (int c = 0; c < 80; ++c) {
    const index_t heads = r.between(1, 3), group = r.between(1, 4), dim = r.between(1, 128), n = r.between(2, 300);
    const index_t w = r.between(1, std::min<index_t>(n, 16));
    const bool causal = r.chance(0.6), per_head = r.chance(0.5);
    std::vector<index_t> lengths(static_cast<std::size_t>(heads), n), budgets_of_heads;
    if (per_head) {
      for (auto& length : lengths) length = r.between(2, r.chance(0.5) ? std::max<index_t>(2, w) : n);
      lengths[static_cast<std::size_t>(r.between(0, heads - 1))] = n;  // the view's resident tokens
    }
    for (const index_t length : lengths) {
      budgets_of_heads.push_back(length - 1);
      short_heads += causal && length < w;
    }
    host_image<T, layouts::nhd> img;
    arrange(img, r, n, heads, dim);
    for (index_t head = 0; head < heads; ++head)
      for (index_t tok = 0; tok < n; ++tok) {
        img.view.meta_at(tok, head) = token_meta{.index = tok};
        for (index_t d = 0; d < dim; ++d) img.view.key(tok, head).data[d] = 2 * r.normal();
      }
    img.view.length = n;
    std::vector<T> queries(static_cast<std::size_t>(w * heads * group * dim));
    for (auto& x : queries) x = 2 * r.normal();
    const kv_tensor<const T> window{queries.data(), w, heads * group, dim, kv_layout::nhd};
    // Host masses first (the reference compacts the cache), over each head's own length.
    std::vector<std::vector<float>> host_mass;
    img.view.head_lengths = per_head ? lengths.data() : nullptr;
    for (index_t head = 0; head < heads; ++head) {
      const scorers::observation_window raw{.pool_radius = 0};
      host_mass.push_back(host_window_scores(img.view, head, raw, structures::sequence{.length = 1 << 20}, window, causal));
    }
    img.view.head_lengths = nullptr;  // the device reads them from the batch
    const std::vector<layer_view<T, layouts::nhd>> views{img.view};
    const std::vector<index_t> budgets{n - 1};
    const std::vector<kv_tensor<const T>> windows{window};
    dev::compress_batch<T, layouts::nhd> batch{views, budgets};
    if (per_head) batch.head_lengths = lengths, batch.head_budgets = budgets_of_heads;
    batch.windows = windows, batch.window_is_chunk_tail = causal;
    const dev::compress_policies<scorers::observation_window> policies{{.pool_radius = 0}};
    std::size_t bytes = 0;
    REQUIRE(dev::reference::compress(nullptr, bytes, batch, policies).ok());
    std::vector<std::byte> temp(bytes);
    REQUIRE(dev::reference::compress(temp.data(), bytes, batch, policies).ok());
    dev::plan_totals p;
    REQUIRE(dev::plan(batch, p, dev::needs_of<scorers::observation_window>).ok());
    workspace_carver carver(dev::workspace_base(temp.data()));
    const auto ws = dev::carve<T, layouts::nhd>(carver, p, dev::needs_of<scorers::observation_window>);
    REQUIRE(p.active_segments == heads);
    for (index_t head = 0; head < heads; ++head) {
      double sum = 0;
      for (index_t tok = 0; tok < lengths[head]; ++tok) {
        const float got = ws.window_mass[ws.token_indptr[head] + tok], want = host_mass[head][tok];
        sum += got;
        worst = std::max(worst, static_cast<double>(std::fabs(got - want)) / (want + 1e-30));
        INFO("case ", c, " head ", head, " slot ", tok, " of ", lengths[head], " (window ", w, "): ", got, " vs ", want);
        REQUIRE(std::fabs(got - want) <= 2e-5f * want + 1e-30f);
      }
      INFO("case ", c, " head ", head);
      REQUIRE(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
  }
  MESSAGE("largest relative difference from the host's window mass: ", worst, "; ", short_heads,
          " heads shorter than a causal window");
  // The case this test is for did occur (10 times at the committed seed; 3 at the fewest over
  // KVCAP_TEST_SEED=1 to 100, where "more than 3" failed once: tools/soak/soak.sh).
  CHECK(short_heads > 0);
}

TEST_CASE("window attention keeps what the window looks at, summed over the GQA group (hand-checked)") {
  // 8 tokens of one kv-head, dim 2: k2 = (4, 0), k5 = (0, 4), every other key 0. Two query
  // heads share the kv-head: q0 = (1, 0) looks at t2, q1 = (0, 1) at t5. Each row puts
  // e^(4/√2) / (e^(4/√2) + 7) = 0.707 on its token and 0.042 on each other; summed over the
  // group, t2 and t5 get 0.374 and every other token 0.042 (exact ties: the smaller index).
  using T = float;
  std::vector<T> k(16, 0.f), v(16, 1.f), q = {1, 0, 0, 1};
  k[2 * 2] = 4, k[5 * 2 + 1] = 4;
  std::vector<token_meta> meta;
  for (index_t t = 0; t < 8; ++t) meta.push_back(token_meta{.index = t});
  const kv_tensor<const T> window{q.data(), 1, 2, 2};
  for (const index_t budget : {2, 3}) {
    const std::vector<std::int64_t> expect = budget == 2 ? std::vector<std::int64_t>{2, 5} : std::vector<std::int64_t>{0, 2, 5};
    // The host executor.
    host::compressor<T, layouts::nhd, scorers::observation_window, budgets::fixed_tokens> c(
        {.num_layers = 1, .num_kv_heads = 1, .num_q_heads = 2, .head_dim = 2, .max_chunk = 8, .max_window = 1},
        {.scorer = {.pool_radius = 0}, .budget = {.tokens = budget}});
    c.append(0, {k.data(), 8, 1, 2}, {v.data(), 8, 1, 2}, meta);
    c.compress(0, window);
    std::vector<std::int64_t> host_kept;
    for (index_t t = 0; t < c.length(0); ++t) host_kept.push_back(c.layer(0).meta_at(t, 0).index);
    CHECK(host_kept == expect);
    // The device algorithm.
    std::vector<T> dk = k, dv = v;
    std::vector<token_meta> dmeta = meta;
    const layer_view<T, layouts::nhd> view{dk.data(), dv.data(), dmeta.data(), make_mapping<layouts::nhd>(8, 1, 2), 8};
    const std::vector<layer_view<T, layouts::nhd>> views{view};
    const std::vector<index_t> budgets{budget};
    const std::vector<kv_tensor<const T>> windows{window};
    dev::compress_batch<T, layouts::nhd> b{views, budgets};
    b.windows = windows;
    const dev::compress_policies<scorers::observation_window> policies{{.pool_radius = 0}};
    std::size_t bytes = 0;
    REQUIRE(dev::reference::compress(nullptr, bytes, b, policies).ok());
    std::vector<std::byte> temp(bytes);
    REQUIRE(dev::reference::compress(temp.data(), bytes, b, policies).ok());
    std::vector<std::int64_t> device_kept;
    for (index_t t = 0; t < budget; ++t) device_kept.push_back(dmeta[t].index);
    CHECK(device_kept == expect);
  }
}
