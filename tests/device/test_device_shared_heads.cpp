// tests/device/test_device_shared_heads.cpp — heads that share their view's budget
// (compress_batch::share_heads), in the device algorithm's host reference (no GPU needed):
// the shared rank key's order, a hand-checked kept set, the refusals, and agreement with the
// host executor's budgets::head_adaptive over randomized batches. test_device_parity.cu runs
// the same randomized cases on the kernels (a GPU, or the CPU SIMT emulator).

#include <doctest/doctest.h>

#include <limits>

#include <kvcap/device/reference.cuh>

#include "harness.hpp"
#include "shared_heads_case.hpp"
#include "shared_heads_hand.hpp"

using namespace kvcap;
using namespace kvcap_test;
namespace dev = kvcap::device;

TEST_CASE("shared rank keys order tokens by ranks_before, then by the smaller head") {
  rng r(11);
  const float scores[] = {0.f, -0.f, 1.f, -1.f, 2.5f, HUGE_VALF, -HUGE_VALF};
  const std::int64_t indices[] = {0, 1, 2, 7, (std::int64_t{1} << 40) + 3, std::int64_t{1} << 62, -5};
  for (int i = 0; i < 200000; ++i) {
    const rank_key a{scores[r.between(0, 6)], indices[r.between(0, 6)], r.chance(0.2)};
    const rank_key b{scores[r.between(0, 6)], indices[r.between(0, 6)], r.chance(0.2)};
    const index_t head_a = r.between(0, 5), head_b = r.between(0, 5);
    if (a.index == b.index && head_a == head_b) continue;  // one token: keys are unique in a view
    const bool a_first = ranks_before(a, b) || (!ranks_before(b, a) && head_a < head_b);
    const dev::wide_key ka = dev::encode_shared_rank(dev::encode_rank(a.is_protected, a.score, 0), a.index, head_a);
    const dev::wide_key kb = dev::encode_shared_rank(dev::encode_rank(b.is_protected, b.score, 0), b.index, head_b);
    REQUIRE(!(ka == kb));
    REQUIRE((ka >= kb) == a_first);
    REQUIRE(!(ka == dev::floor_kept_key));
    REQUIRE(dev::floor_kept_key >= ka);
  }
  // The slot of the segment's key plays no part: only (protected, score) are taken from it.
  CHECK(dev::encode_shared_rank(dev::encode_rank(false, 1.f, 0), 4, 1) ==
        dev::encode_shared_rank(dev::encode_rank(false, 1.f, 9), 4, 1));
}

TEST_CASE("a radix select over wide keys keeps exactly the k largest") {
  rng r(12);
  for (int c = 0; c < 2000; ++c) {
    const index_t n = r.between(0, 200);
    std::vector<dev::wide_key> keys;
    for (index_t i = 0; i < n; ++i)  // few distinct high words: the select must reach the low word
      keys.push_back(r.chance(0.1) ? dev::floor_kept_key
                                   : dev::wide_key{static_cast<std::uint64_t>(r.between(0, 2)) << 62,
                                                   static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull});
    index_t top = 0;  // the sentinels tie: ask for at least all of them
    for (const auto& k : keys) top += k == dev::floor_kept_key;
    const index_t keep = r.between(top, n);
    const auto sel = dev::reference::select(keys.data(), n, keep);
    std::vector<dev::wide_key> sorted = keys;
    std::sort(sorted.begin(), sorted.end(), [](dev::wide_key a, dev::wide_key b) { return !(b >= a); });
    index_t kept = 0;
    for (index_t i = 0; i < n; ++i) {
      const bool in_top = keep > 0 && keys[i] >= sorted[static_cast<std::size_t>(keep - 1)];
      REQUIRE(sel.keeps(keys[i]) == in_top);
      kept += sel.keeps(keys[i]);
    }
    REQUIRE(kept == keep);
  }
}

TEST_CASE("shared budgets: bad arguments are refused by name, and nothing moves") {
  using T = float;
  host_image<T, layouts::nhd> img;
  rng r(3);
  two_heads(img, r, 8, 2, [&](index_t, index_t) { return static_cast<T>(r.normal()); });
  const std::vector<layer_view<T, layouts::nhd>> views{img.view};
  std::vector<index_t> budgets{4}, out(2, -1), head_budgets{4, 4}, lengths_out(1);
  const dev::compress_policies<scorers::key_norm> policies{};
  dev::status last;
  const auto refused = [&](const dev::compress_batch<T, layouts::nhd>& b, dev::errc code, const std::string& argument) {
    const auto k = img.k, v = img.v;
    std::size_t bytes = 1 << 20;
    std::vector<std::byte> temp(bytes);
    last = dev::reference::compress(temp.data(), bytes, b, policies);
    CHECK(last.code == code);
    CHECK(std::string(last.argument ? last.argument : "") == argument);
    CHECK(img.k == k);
    CHECK(img.v == v);
    CHECK(out == std::vector<index_t>(2, -1));  // no length written either
  };
  dev::compress_batch<T, layouts::nhd> b{views, budgets};
  b.share_heads = dev::head_sharing{0.25};
  refused(b, dev::errc::invalid_argument, "head_lengths_device_out (device memory, with share_heads)");
  b.head_lengths_device_out = out.data();
  for (const double bad : {-0.1, 1.5, std::nan("")}) {
    b.share_heads = dev::head_sharing{bad};
    refused(b, dev::errc::invalid_argument, "share_heads->min_head_fraction (a fraction in [0, 1])");
  }
  b.share_heads = dev::head_sharing{0.25};
  b.head_budgets = head_budgets;
  refused(b, dev::errc::invalid_argument, "head_budgets (none when heads share budgets: share_heads)");
  b.head_budgets = {};
  b.lengths_out = lengths_out;
  refused(b, dev::errc::invalid_argument,
          "lengths_out, head_lengths_out (none with share_heads: head_lengths_device_out)");
  b.lengths_out = {};
  // A head's length past its capacity is named before the view's heads are added up (a sum
  // that would wrap: UBSan, in CI, stops on it).
  for (const index_t bad : {index_t{9}, std::numeric_limits<index_t>::max()}) {
    const std::vector<index_t> head_lengths{8, bad};
    b.head_lengths = head_lengths;
    refused(b, dev::errc::capacity_exceeded, "head_lengths[]");
    CHECK(last.at == 1);
    CHECK(last.expected == 8);
    CHECK(last.received == bad);
  }
  b.head_lengths = {};
  // Protected tokens the shared budget cannot hold: 3 a head, budget 2 (4 in all), floor 0.
  for (index_t head = 0; head < 2; ++head)
    for (index_t tok = 0; tok < 3; ++tok) img.view.meta_at(tok, head).is_protected = true;
  budgets[0] = 2;
  b.share_heads = dev::head_sharing{0.0};
  refused(b, dev::errc::budget_below_protected, "budgets[] (protected tokens resident)");
  CHECK(last.at == 0);
  CHECK(last.expected == 6);
  CHECK(last.received == 4);
  budgets[0] = 0;  // no floors, no select: every protected token is one too many
  b.share_heads = dev::head_sharing{0.5};
  refused(b, dev::errc::budget_below_protected, "budgets[] (protected tokens resident)");
  CHECK(last.expected == 6);
  CHECK(last.received == 0);
}

namespace {

/// shared_heads_case's executor: the reference, in place on the host images.
struct reference_executor {
  template <class T, class Layout, class Policies>
  std::vector<index_t> operator()(std::vector<host_image<T, Layout>>& /*images*/, dev::compress_batch<T, Layout> batch,
                                  const Policies& policies) const {
    std::vector<index_t> out(batch.views.size() * static_cast<std::size_t>(batch.views[0].mapping.num_heads), -1);
    batch.head_lengths_device_out = out.data();
    std::size_t bytes = 0;
    REQUIRE(dev::reference::compress(nullptr, bytes, batch, policies).ok());
    std::vector<std::byte> temp(bytes);
    const dev::status s = dev::reference::compress(temp.data(), bytes, batch, policies);
    INFO("status ", std::string(dev::to_string(s.code)), " ", std::string(s.argument ? s.argument : ""), " at ", s.at);
    REQUIRE(s.ok());
    return out;
  }
};

}  // namespace

TEST_CASE("heads that share a budget: hand-checked kept sets") {
  check_shared_hand_cases(reference_executor{});  // test_device_parity.cu: the same on the kernels
}

TEST_CASE_TEMPLATE("heads that share a budget keep what the host's head-adaptive budget keeps", Layout, layouts::nhd,
                   layouts::paged_hnd, layouts::varlen) {
  rng r(700 + static_cast<std::uint64_t>(Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>);
  shared_case_counts counts;
  for (int c = 0; c < 60; ++c) {
    counts += shared_heads_case<Layout, scorers::key_norm>(r, reference_executor{});
    counts += shared_heads_case<Layout, scorers::recency>(r, reference_executor{});
    counts += shared_heads_case<Layout, scorers::key_diff>(r, reference_executor{});
    counts += shared_heads_case<Layout, scorers::temporal_redundancy>(r, reference_executor{});
    counts += shared_heads_case<Layout, scorers::blend<scorers::key_norm, scorers::value_norm>>(r, reference_executor{});
    counts += shared_heads_case<Layout, scorers::key_norm, reducers::merge>(r, reference_executor{});
  }
  MESSAGE(describe(counts));
  CHECK(counts.unequal_heads > 100);  // the heads did take different shares
}

namespace {

/// `img`: `before` (2 heads of 4 tokens, dim 1, logical indices 0-3) with each head compacted
/// to the tokens of `kept` that it holds, in order.
void kept_image(const host_image<float, layouts::nhd>& before, const std::vector<std::vector<std::int64_t>>& kept,
                host_image<float, layouts::nhd>& img) {
  clone(before, img);
  for (index_t head = 0; head < 2; ++head) {
    index_t dst = 0;
    for (index_t tok = 0; tok < 4; ++tok) {
      if (std::find(kept[head].begin(), kept[head].end(), tok) == kept[head].end()) continue;
      img.view.k[img.view.mapping(dst, head)] = before.view.k[before.view.mapping(tok, head)];
      img.view.v[img.view.mapping(dst, head)] = before.view.v[before.view.mapping(tok, head)];
      img.view.meta_at(dst++, head) = before.view.meta_at(tok, head);
    }
  }
}

}  // namespace

TEST_CASE("near-ties across heads: the comparison of window-scored kept sets") {
  // The host keeps tokens 0, 1 of each head. Head 1's token 1 (0.5 + 2e-6) is the host's last
  // kept; head 0's token 2 (0.5) is the next. A device that rounds them the other way keeps
  // 3 tokens in head 0 and 1 in head 1: with shared budgets a near-tie swap between heads.
  host_image<float, layouts::nhd> before;
  rng r(5);
  two_heads(before, r, 4, 1, [](index_t head, index_t tok) { return static_cast<float>(10 * head + tok); });
  const std::vector<std::vector<float>> scores{{0.9f, 0.8f, 0.5f, 0.1f}, {0.9f, 0.5f + 2e-6f, 0.2f, 0.1f}};
  const std::vector<index_t> lengths_before{4, 4}, host_lengths{2, 2};
  host_image<float, layouts::nhd> host, got;
  kept_image(before, {{0, 1}, {0, 1}}, host);
  const auto compare = [&](const std::vector<std::vector<std::int64_t>>& kept, bool shared, float tol) {
    kept_image(before, kept, got);
    const std::vector<index_t> got_lengths{static_cast<index_t>(kept[0].size()), static_cast<index_t>(kept[1].size())};
    index_t near_ties = 0;
    const std::string verdict = compare_kept_near_ties(before.view, lengths_before, scores, host.view, host_lengths,
                                                       got.view, got_lengths, shared, tol, near_ties);
    return verdict.empty() ? "near ties " + std::to_string(near_ties) : verdict;
  };
  CHECK(compare({{0, 1}, {0, 1}}, true, 1e-5f) == "near ties 0");
  CHECK(compare({{0, 1, 2}, {0}}, true, 1e-5f) == "near ties 2");  // the swap between heads
  CHECK(compare({{0, 1, 2}, {0}}, true, 1e-7f).starts_with("kept sets differ at head 0 at index 2"));
  CHECK(compare({{0, 1, 2}, {0}}, false, 1e-5f) == "lengths differ at head 0");  // per-head budgets
  CHECK(compare({{0, 1, 2}, {0, 1}}, true, 1e-5f) == "the view's kept totals differ");
  CHECK(compare({{0, 1}, {0, 2}}, true, 1e-5f).starts_with("kept sets differ at head 1 at index 2"));  // 0.2: far
  // A kept row must be the row it was, in order.
  kept_image(before, {{0, 1}, {0, 1}}, got);
  got.view.k[got.view.mapping(1, 1)] = 99.f;
  index_t near_ties = 0;
  CHECK(compare_kept_near_ties(before.view, lengths_before, scores, host.view, host_lengths, got.view, host_lengths,
                               true, 1e-5f, near_ties) == "kept row changed at head 1 slot 1");
}

TEST_CASE_TEMPLATE("heads that share a budget keep what the host keeps by window attention (to near-ties)", Layout,
                   layouts::nhd, layouts::paged_hnd, layouts::varlen) {
  // SnapKV's observation window over shared budgets: the window mass is the host's only to
  // float rounding, so a near-tied token may change sides, also between heads
  // (shared_heads_case.hpp); every other token, every kept row and each view's total must agree.
  rng r(800 + static_cast<std::uint64_t>(Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>);
  shared_case_counts counts;
  for (int c = 0; c < 1000; ++c) counts += shared_heads_case<Layout, scorers::observation_window>(r, reference_executor{});
  for (int c = 0; c < 3; ++c)
    counts += shared_heads_case<Layout, scorers::observation_window>(r, reference_executor{}, 1500, 600);
  MESSAGE(describe(counts));
  CHECK(counts.unequal_heads > 200);
}
