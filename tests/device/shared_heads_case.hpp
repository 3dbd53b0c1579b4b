#pragma once
// tests/device/shared_heads_case.hpp — one randomized batch of views whose heads share their
// budget (compress_batch::share_heads), checked against the host executor's
// budgets::head_adaptive: each request is a host executor over layouts::varlen driven through
// random chunks; its cache is copied, head by head, into a random arrangement of `Layout`;
// one call of `Executor` (the reference, the kernels) compresses the batch; each head must then
// hold exactly the host's tokens, in order, bit for bit, with the host's length, and nothing
// else in the storage may change but what an in-place compaction leaves behind.
// Window scorers (SnapKV's observation window: GQA groups 1-4, causal chunk tails and
// free-standing proxies): the device's window mass is the host's only to float rounding, so a
// view's kept set may differ from the host's by near-tied tokens (within `window_tolerance`
// of a cutoff, in any head: compare_kept_near_ties), tokens that may move between heads; every
// kept row must still be intact and in order, and the view's total the host's. A view with no
// such swap is then compared exactly, as above.
//
// An Executor is called as
//     std::vector<index_t> out = exec(images, batch, policies);
// with host images (compressed in place: the executor copies them to and from its memory as
// it needs) and a batch over them, its windows in host memory too; it returns
// head_lengths_device_out.

#include <span>
#include <string>
#include <vector>

#include "harness.hpp"

namespace kvcap_test {

/// What the cases saw: views with tokens to drop, heads left unequal afterwards; window
/// scorers: near-tie swaps, and views where they moved a token from one head to another.
struct shared_case_counts {
  index_t shared_views = 0, unequal_heads = 0, near_ties = 0, moved_between_heads = 0;
  shared_case_counts& operator+=(const shared_case_counts& o) {
    shared_views += o.shared_views, unequal_heads += o.unequal_heads, near_ties += o.near_ties;
    moved_between_heads += o.moved_between_heads;
    return *this;
  }
};

/// What the cases saw, in words.
inline std::string describe(const shared_case_counts& c) {
  return std::to_string(c.shared_views) + " views shared their budget; " + std::to_string(c.unequal_heads) +
         " ended with unequal heads; " + std::to_string(c.near_ties) + " near-tie swaps, in " +
         std::to_string(c.moved_between_heads) + " views between heads";
}

template <class Layout, class Scorer, class Reducer = reducers::evict, class T = float, class Executor>
shared_case_counts shared_heads_case(rng& r, const Executor& exec, index_t max_budget = 40, index_t max_chunk = 30,
                                     float window_tolerance = 1e-5f) {
  using Structure = structure_for<Scorer>;
  using request = host_request<T, layouts::varlen, Scorer, Structure, Reducer, budgets::head_adaptive>;
  constexpr bool windowed = request::windowed;
  const index_t heads = r.between(1, 4), dim = r.between(1, 9), num_requests = r.between(1, 4);
  const index_t group = windowed ? r.between(1, 4) : 1;  // GQA
  const bool causal = !windowed || r.chance(0.7);
  const double fractions[] = {0.0, 0.2, 0.25, 0.5, 1.0};
  const double fraction = fractions[r.between(0, 4)];
  const device::compress_policies<Scorer, Structure, Reducer> policies{make_scorer<Scorer>(r),
                                                                       make_structure<Structure>(r)};
  std::vector<request> requests(static_cast<std::size_t>(num_requests));
  std::vector<host_image<T, Layout>> images(requests.size()), untouched(requests.size());
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets, head_lengths, appended;
  std::vector<kv_tensor<const T>> windows;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    q.min_head_fraction = fraction;
    q.drive(r, heads, dim, policies.scorer, policies.structure, max_budget, max_chunk, group, causal);
    const auto& host_view = q.c->layer(0);
    std::vector<index_t> lengths;
    for (index_t head = 0; head < heads; ++head) lengths.push_back(host_view.length_of(head));
    arrange(images[i], r, std::max<index_t>(host_view.length, 1), heads, dim);
    copy_tokens(host_view, images[i].view, lengths);
    images[i].view.length = host_view.length;  // ignored: head_lengths rule
    clone(images[i], untouched[i]);
    views.push_back(images[i].view);
    budgets.push_back(q.budget);
    head_lengths.insert(head_lengths.end(), lengths.begin(), lengths.end());
    appended.push_back(q.last_chunk);
    q.next_window(r);
    windows.push_back(q.window);
  }
  device::compress_batch<T, Layout> batch{views, budgets, head_lengths};
  batch.share_heads = device::head_sharing{fraction};
  if (windowed) batch.windows = windows, batch.window_is_chunk_tail = causal;
  if ((num_requests + heads) % 2 == 0) batch.appended = appended;  // else every resident slot is checked
  const std::vector<index_t> out = exec(images, batch, policies);

  shared_case_counts counts;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    const auto& host_view = q.c->layer(0);
    const std::span<const index_t> lengths_before(head_lengths.data() + i * heads, static_cast<std::size_t>(heads));
    index_t total = 0;
    for (const index_t n : lengths_before) total += n;
    counts.shared_views += total > heads * q.budget;
    const auto scores = window_scores_before_compress(q, policies, causal);  // for near-ties
    q.compress();
    std::vector<index_t> lengths;
    for (index_t head = 0; head < heads; ++head) lengths.push_back(host_view.length_of(head));
    counts.unequal_heads += std::adjacent_find(lengths.begin(), lengths.end(), std::not_equal_to<>()) != lengths.end();
    INFO(std::string(layout_name<Layout>()), " request ", i, " of ", num_requests, ", heads ", heads, ", dim ", dim,
         ", budget ", q.budget, ", fraction ", fraction, ", mode ", static_cast<int>(q.mode));
    const std::span<const index_t> got_lengths(out.data() + i * heads, static_cast<std::size_t>(heads));
    if (!scores.empty()) {  // kept sets equal up to near-ties; kept rows intact and in order
      index_t near_ties = 0;
      REQUIRE(compare_kept_near_ties(untouched[i].view, lengths_before, scores, host_view, lengths, images[i].view,
                                     got_lengths, true, window_tolerance, near_ties) == "");
      counts.near_ties += near_ties;
      counts.moved_between_heads += !std::equal(got_lengths.begin(), got_lengths.end(), lengths.begin());
      if (near_ties > 0) continue;
    }
    REQUIRE(std::vector<index_t>(got_lengths.begin(), got_lengths.end()) == lengths);
    REQUIRE(compare_tokens(host_view, images[i].view, lengths) == "");
    host_image<T, Layout> expected;
    clone(untouched[i], expected);
    copy_tokens(host_view, expected.view, lengths);
    add_left_behind_rows(untouched[i].view, lengths_before, host_view, lengths, expected.view);
    REQUIRE(compare_storage(expected, images[i]) == "");
  }
  return counts;
}

}  // namespace kvcap_test
