#pragma once
// tests/device/shared_heads_case.hpp — one randomized batch of views whose heads share their
// budget (compress_batch::share_heads), checked against the host executor's
// budgets::head_adaptive: each request is a host executor over layouts::varlen driven through
// random chunks; its cache is copied, head by head, into a random arrangement of `Layout`;
// one call of `Executor` (the reference, the kernels) compresses the batch; each head must then
// hold exactly the host's tokens, in order, bit for bit, with the host's length, and nothing
// else in the storage may change but what an in-place compaction leaves behind.
//
// An Executor is called as
//     std::vector<index_t> out = exec(images, batch, policies);
// with host images (compressed in place: the executor copies them to and from its memory as
// it needs) and a batch over them; it returns head_lengths_device_out.

#include <span>
#include <vector>

#include "harness.hpp"

namespace kvcap_test {

/// What the cases saw: views with tokens to drop, heads left unequal afterwards.
struct shared_case_counts {
  index_t shared_views = 0, unequal_heads = 0;
  shared_case_counts& operator+=(const shared_case_counts& o) {
    return shared_views += o.shared_views, unequal_heads += o.unequal_heads, *this;
  }
};

template <class Layout, class Scorer, class Reducer = reducers::evict, class T = float, class Executor>
shared_case_counts shared_heads_case(rng& r, const Executor& exec, index_t max_budget = 40, index_t max_chunk = 30) {
  using Structure = structure_for<Scorer>;
  using request = host_request<T, layouts::varlen, Scorer, Structure, Reducer, budgets::head_adaptive>;
  const index_t heads = r.between(1, 4), dim = r.between(1, 9), num_requests = r.between(1, 4);
  const double fractions[] = {0.0, 0.2, 0.25, 0.5, 1.0};
  const double fraction = fractions[r.between(0, 4)];
  const device::compress_policies<Scorer, Structure, Reducer> policies{make_scorer<Scorer>(r),
                                                                       make_structure<Structure>(r)};
  std::vector<request> requests(static_cast<std::size_t>(num_requests));
  std::vector<host_image<T, Layout>> images(requests.size()), untouched(requests.size());
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets, head_lengths, appended;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    q.min_head_fraction = fraction;
    q.drive(r, heads, dim, policies.scorer, policies.structure, max_budget, max_chunk);
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
  }
  device::compress_batch<T, Layout> batch{views, budgets, head_lengths};
  batch.share_heads = device::head_sharing{fraction};
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
    q.compress();
    std::vector<index_t> lengths;
    for (index_t head = 0; head < heads; ++head) lengths.push_back(host_view.length_of(head));
    counts.unequal_heads += std::adjacent_find(lengths.begin(), lengths.end(), std::not_equal_to<>()) != lengths.end();
    INFO(std::string(layout_name<Layout>()), " request ", i, " of ", num_requests, ", heads ", heads, ", dim ", dim,
         ", budget ", q.budget, ", fraction ", fraction, ", mode ", static_cast<int>(q.mode));
    REQUIRE(std::vector<index_t>(out.begin() + i * heads, out.begin() + (i + 1) * heads) == lengths);
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
