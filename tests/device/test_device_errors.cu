// tests/device/test_device_errors.cu — the device executor's error statuses leave the cache
// unchanged; metadata checks found on the device; workspace size query, bound and "no
// allocation"; streams; ties; determinism.

#include <numeric>

#include "device_harness.cuh"
#include "refusal_cases.hpp"

using namespace kvcap;
using namespace kvcap_test;
namespace dev = kvcap::device;

namespace {

/// A batch of `n` NHD half caches in device memory: capacity 40, 2 heads, dim 8, full,
/// budget 16, logical index = slot, random keys.
struct fixture {
  dev::counting_resource mr;
  std::vector<host_image<__half, layouts::nhd>> before;
  std::vector<std::unique_ptr<device_image<__half, layouts::nhd>>> images;
  std::vector<layer_view<__half, layouts::nhd>> views;
  std::vector<index_t> budgets;
  static constexpr index_t capacity = 40, heads = 2, dim = 8;

  explicit fixture(index_t n, std::uint64_t seed = 7) : before(static_cast<std::size_t>(n)) {
    rng r(seed);
    for (auto& h : before) {
      arrange(h, r, capacity, heads, dim);
      for (index_t head = 0; head < heads; ++head)
        for (index_t tok = 0; tok < capacity; ++tok) {
          h.view.meta_at(tok, head) = structures::sequence{.length = capacity}.meta(tok);
          for (index_t d = 0; d < dim; ++d) {
            h.view.k[h.view.mapping(tok, head) + d] = __float2half(r.normal());
            h.view.v[h.view.mapping(tok, head) + d] = __float2half(r.normal());
          }
        }
      images.push_back(std::make_unique<device_image<__half, layouts::nhd>>(mr, h));
      images.back()->view.length = capacity;
      views.push_back(images.back()->view);
      budgets.push_back(16);
    }
  }
  dev::compress_batch<__half, layouts::nhd> batch() { return {views, budgets}; }
  /// Device storage equals what was uploaded (or was last re-uploaded).
  void require_unchanged() {
    for (std::size_t i = 0; i < before.size(); ++i) {
      host_image<__half, layouts::nhd> now;
      clone(before[i], now);
      images[i]->download(now);
      REQUIRE(compare_storage(before[i], now) == "");
    }
  }
  void reupload() {
    for (std::size_t i = 0; i < before.size(); ++i) images[i]->upload(before[i]);
  }
};

constexpr dev::compress_policies<scorers::key_norm> key_norm_policies{};

dev::status run(fixture& f, dev::compress_batch<__half, layouts::nhd> b, std::size_t extra = 0) {
  std::size_t bytes = 0;
  auto sized = b;  // the size query needs a valid batch to say anything: use the fixture's
  if (!dev::compress(nullptr, bytes, sized, key_norm_policies).ok()) bytes = 1 << 20;
  device_buffer temp(f.mr, bytes + extra);
  bytes += extra;
  const dev::status s = dev::compress(temp.data, bytes, b, key_norm_policies);
  KVCAP_TEST_CUDA(cudaDeviceSynchronize());
  if (!s) return s;
  return dev::read_status(temp.data);
}

}  // namespace

TEST_CASE("invalid batches return a status and leave the cache unchanged" * doctest::skip(no_gpu())) {
  const auto expect = [](fixture& f, dev::compress_batch<__half, layouts::nhd> b, dev::errc code, std::string argument,
                         index_t at, index_t expected = refusal::any_expected) {
    const dev::status s = run(f, b);
    CHECK(s.code == code);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == at);
    f.require_unchanged();
    if (expected != refusal::any_expected) CHECK(s.expected == expected);
  };
  {
    fixture f(refusal_views);  // the batch every case edits is valid as it is
    REQUIRE(run(f, f.batch()).ok());
  }
  for (const auto& c : refusal_cases<__half, layouts::nhd>()) {  // shared with the reference's test
    INFO(std::string(c.expect.edit));
    fixture f(refusal_views);
    refusal_batch<__half, layouts::nhd> edited{f.views, f.budgets};
    c.apply(edited);
    expect(f, edited.batch(), c.expect.code, c.expect.argument, c.expect.at, c.expect.expected);
  }
  {  // too small a workspace
    fixture f(2);
    std::size_t bytes = 0;
    REQUIRE(dev::compress(nullptr, bytes, f.batch(), key_norm_policies).ok());
    device_buffer temp(f.mr, bytes);
    std::size_t short_bytes = bytes - 1;
    const dev::status s = dev::compress(temp.data, short_bytes, f.batch(), key_norm_policies);
    CHECK(s.code == dev::errc::workspace_too_small);
    CHECK(s.expected == static_cast<index_t>(bytes));
    KVCAP_TEST_CUDA(cudaDeviceSynchronize());
    f.require_unchanged();
  }
}

TEST_CASE("metadata errors are found on the device; nothing moves; the next call is clean" * doctest::skip(no_gpu())) {
  fixture f(3);
  {  // 17 protected tokens in (view 2, head 1), budget 16
    for (index_t tok = 10; tok < 27; ++tok) f.before[2].view.meta_at(tok, 1).is_protected = true;
    f.reupload();
    std::vector<index_t> out(3, -1);
    auto b = f.batch();
    b.lengths_out = out;
    const dev::status s = run(f, b);
    CHECK(s.code == dev::errc::budget_below_protected);
    CHECK(s.at == 5);
    CHECK(s.expected == 17);
    CHECK(s.received == 16);
    f.require_unchanged();
  }
  {  // exactly the budget in protected tokens: fine, and they are all kept
    f.before[2].view.meta_at(26, 1).is_protected = false;
    f.reupload();
    REQUIRE(run(f, f.batch()).ok());
    host_image<__half, layouts::nhd> now;
    clone(f.before[2], now);
    f.images[2]->download(now);
    for (index_t tok = 0; tok < 16; ++tok) CHECK(now.view.meta_at(tok, 1).index == 10 + tok);
  }
  {  // indices that go backwards in (view 1, head 0)
    f.reupload();
    f.before[1].view.meta_at(20, 0).index = 3;
    f.reupload();
    const dev::status s = run(f, f.batch());
    CHECK(s.code == dev::errc::meta_out_of_order);
    CHECK(s.at == 2);
    CHECK(s.expected == 20);
    CHECK(s.received == 3);
    f.require_unchanged();
    f.before[1].view.meta_at(20, 0).index = 20;
    f.reupload();
    CHECK(run(f, f.batch()).ok());
  }
  {  // an image token where the structure (a text sequence) declares none, in (view 1, head 1)
    f.reupload();
    f.before[1].view.meta_at(12, 1).kind = segment_kind::image;
    f.reupload();
    const dev::status s = run(f, f.batch());
    CHECK(s.code == dev::errc::meta_out_of_structure);
    CHECK(s.at == 3);
    CHECK(s.received == 12);
    f.require_unchanged();
    f.before[1].view.meta_at(12, 1).kind = segment_kind::text;
  }
}

TEST_CASE("heads that share a budget: a failed check leaves the cache and the lengths as they were" *
          doctest::skip(no_gpu())) {
  fixture f(2);
  device_buffer out_memory(f.mr, 4 * sizeof(index_t));
  const auto out_now = [&] {
    std::vector<index_t> out(4);
    KVCAP_TEST_CUDA(cudaMemcpy(out.data(), out_memory.data, out.size() * sizeof(index_t), cudaMemcpyDeviceToHost));
    return out;
  };
  const std::vector<index_t> untouched{-1, -1, -1, -1};
  KVCAP_TEST_CUDA(cudaMemcpy(out_memory.data, untouched.data(), 4 * sizeof(index_t), cudaMemcpyHostToDevice));
  auto b = f.batch();
  b.share_heads = dev::head_sharing{.min_head_fraction = 0.25};  // floor 4 of budget 16
  b.head_lengths_device_out = static_cast<index_t*>(out_memory.data);
  {  // view 1: 16 protected tokens in each head, 32 in all: the floors keep 8, the 24 left take the rest
    for (index_t head = 0; head < 2; ++head)
      for (index_t tok = 0; tok < 16; ++tok) f.before[1].view.meta_at(tok, head).is_protected = true;
    f.reupload();
    REQUIRE(run(f, b).ok());
    const std::vector<index_t> out = out_now();
    CHECK(out[0] + out[1] == 32);
    CHECK(out[2] == 16);
    CHECK(out[3] == 16);
  }
  {  // 20 a head: 32 of the 40 protected lie outside the floors' 8, for the 24 left
    for (index_t head = 0; head < 2; ++head)
      for (index_t tok = 16; tok < 20; ++tok) f.before[1].view.meta_at(tok, head).is_protected = true;
    f.reupload();
    KVCAP_TEST_CUDA(cudaMemcpy(out_memory.data, untouched.data(), 4 * sizeof(index_t), cudaMemcpyHostToDevice));
    const dev::status s = run(f, b);
    CHECK(s.code == dev::errc::budget_below_protected);
    CHECK(s.at == 2);  // view 1's first segment
    CHECK(s.expected == 32);
    CHECK(s.received == 24);
    f.require_unchanged();
    CHECK(out_now() == untouched);  // view 0 compressed fine, but no length is handed over
  }
  {  // an index that goes backwards in view 0: found before the heads compete
    for (index_t head = 0; head < 2; ++head)
      for (index_t tok = 0; tok < 20; ++tok) f.before[1].view.meta_at(tok, head).is_protected = false;
    f.before[0].view.meta_at(30, 1).index = 2;
    f.reupload();
    const dev::status s = run(f, b);
    CHECK(s.code == dev::errc::meta_out_of_order);
    CHECK(s.at == 1);
    f.require_unchanged();
    CHECK(out_now() == untouched);
    f.before[0].view.meta_at(30, 1).index = 30;
  }
  {  // budget 0 for view 1: no floors and no select; its one protected token is one too many
    f.budgets[1] = 0;
    auto b0 = f.batch();
    b0.share_heads = b.share_heads, b0.head_lengths_device_out = b.head_lengths_device_out;
    f.before[1].view.meta_at(5, 1).is_protected = true;
    f.reupload();
    const dev::status s = run(f, b0);
    CHECK(s.code == dev::errc::budget_below_protected);
    CHECK(s.at == 2);
    CHECK(s.expected == 1);
    CHECK(s.received == 0);
    f.require_unchanged();
    CHECK(out_now() == untouched);
    f.before[1].view.meta_at(5, 1).is_protected = false;  // without it, view 1 keeps nothing
    f.reupload();
    REQUIRE(run(f, b0).ok());
    const std::vector<index_t> out = out_now();
    CHECK(out[2] == 0);
    CHECK(out[3] == 0);
    f.budgets[1] = 16;
  }
}

TEST_CASE("a failure log keeps the first device-side failure of a run of calls" * doctest::skip(no_gpu())) {
  // One workspace, five calls, no wait between them: the per-call report (read_status) holds
  // the last call's checks only; the log holds the first failure until the caller clears it.
  fixture f(2);
  std::size_t bytes = 0;
  REQUIRE(dev::compress(nullptr, bytes, f.batch(), key_norm_policies).ok());
  device_buffer temp(f.mr, bytes), log(f.mr, sizeof(dev::device_report));
  KVCAP_TEST_CUDA(cudaMemset(log.data, 0, sizeof(dev::device_report)));
  auto* const d_log = static_cast<dev::device_report*>(log.data);
  std::vector<index_t> out(2, -1);
  const auto call = [&] {
    auto b = f.batch();
    b.failure_log = d_log, b.lengths_out = out;
    REQUIRE(dev::compress(temp.data, bytes, b, key_norm_policies).ok());  // the host-side checks pass
  };
  call();  // clean: compressed, the log stays clear
  CHECK(dev::read_status(temp.data).ok());
  CHECK(dev::read_failure_log(d_log).ok());
  f.reupload();
  f.before[1].view.k[f.before[1].view.mapping(7, 1) + 2] = __float2half(NAN);  // segment 3, slot 7
  f.reupload();
  call();  // fails: nothing moves
  f.require_unchanged();
  f.before[1].view.k[f.before[1].view.mapping(7, 1) + 2] = __float2half(0.5f);
  f.before[0].view.meta_at(9, 0).index = 2;  // segment 0: indices go backwards at slot 9
  f.reupload();
  call();  // fails otherwise: the log keeps the first failure
  const dev::status last = dev::read_status(temp.data);
  CHECK(last.code == dev::errc::meta_out_of_order);
  f.before[0].view.meta_at(9, 0).index = 9;
  f.reupload();
  call();  // clean again: compressed, and the log still holds the NaN
  CHECK(dev::read_status(temp.data).ok());
  CHECK(out == std::vector<index_t>{16, 16});
  host_image<__half, layouts::nhd> now;
  clone(f.before[0], now);
  f.images[0]->download(now);
  CHECK(compare_storage(f.before[0], now) != "");  // this call did compress
  const dev::status first = dev::read_failure_log(d_log);
  CHECK(first.code == dev::errc::not_finite);
  CHECK(std::string(first.argument) == "views[].k (finite values; at: segment, received: slot)");
  CHECK(first.at == 3);
  CHECK(first.received == 7);
  KVCAP_TEST_CUDA(cudaMemset(log.data, 0, sizeof(dev::device_report)));  // the caller clears it
  f.reupload();
  call();
  CHECK(dev::read_failure_log(d_log).ok());
}

TEST_CASE("NaN and Inf in K, V or a window are found on the device; nothing moves" * doctest::skip(no_gpu())) {
  const std::string k = "views[].k (finite values; at: segment, received: slot)";
  const std::string v = "views[].v (finite values; at: segment, received: slot)";
  const auto expect_not_finite = [](fixture& f, dev::compress_batch<__half, layouts::nhd> b, const std::string& argument,
                                    index_t at, index_t slot) {
    f.reupload();
    const dev::status s = run(f, b);
    CHECK(s.code == dev::errc::not_finite);
    CHECK(std::string(s.argument) == argument);
    CHECK(s.at == at);
    CHECK(s.received == slot);
    f.require_unchanged();
  };
  const auto element = [](fixture& f, bool key, index_t view, index_t tok, index_t head, index_t d) -> __half& {
    auto& img = f.before[view].view;
    return (key ? img.k : img.v)[img.mapping(tok, head) + d];
  };
  fixture f(3);
  f.budgets[2] = 40;  // view 2 has nothing to drop: it is checked all the same
  element(f, true, 1, 30, 0, 7) = __float2half(NAN);
  expect_not_finite(f, f.batch(), k, 2, 30);
  element(f, true, 1, 30, 0, 7) = __float2half(0.5f);
  element(f, false, 2, 39, 1, 0) = __float2half(-INFINITY);
  expect_not_finite(f, f.batch(), v, 5, 39);
  {  // `appended`: each head's last appended slots are checked, earlier ones are not
    std::vector<index_t> appended{8, 8, 1};
    auto b = f.batch();
    b.appended = appended;
    expect_not_finite(f, b, v, 5, 39);
    element(f, false, 2, 39, 1, 0) = __float2half(1.f);
    element(f, true, 0, 31, 1, 3) = __float2half(INFINITY);  // slot 31 of 40: not among view 0's last 8
    f.reupload();
    REQUIRE(run(f, b).ok());
    element(f, true, 0, 32, 1, 3) = __float2half(NAN);  // slot 32: the first of the last 8
    expect_not_finite(f, b, k, 1, 32);
  }
  {  // an observation window (query heads 4, GQA 2) with a NaN in query 1
    fixture g(2);
    const dev::compress_policies<scorers::observation_window> policies{};
    std::vector<__half> queries(3 * 4 * fixture::dim, __float2half(0.25f));
    queries[(1 * 4 + 3) * fixture::dim + 5] = __float2half(NAN);
    device_buffer memory(g.mr, queries.size() * sizeof(__half));
    KVCAP_TEST_CUDA(cudaMemcpy(memory.data, queries.data(), queries.size() * sizeof(__half), cudaMemcpyHostToDevice));
    const kv_tensor<const __half> bad{static_cast<const __half*>(memory.data), 3, 4, fixture::dim};
    std::vector<kv_tensor<const __half>> windows{bad, bad};
    windows[0].data += 2 * 4 * fixture::dim;  // view 0 sees the last query alone: finite
    windows[0].num_tokens = 1;
    auto b = g.batch();
    b.windows = windows;
    std::size_t bytes = 0;
    REQUIRE(dev::compress(nullptr, bytes, b, policies).ok());
    device_buffer temp(g.mr, bytes);
    REQUIRE(dev::compress(temp.data, bytes, b, policies).ok());
    const dev::status s = dev::read_status(temp.data);
    CHECK(s.code == dev::errc::not_finite);
    CHECK(std::string(s.argument) == "windows[] (finite values; at: view, received: query)");
    CHECK(s.at == 1);
    CHECK(s.received == 1);
    g.require_unchanged();
    // Nothing to drop and no slot to check: the windows are still read, as the host's
    // compress validates the window it is given.
    g.budgets = {40, 40};
    const std::vector<index_t> none{0, 0};
    b = g.batch();
    b.windows = windows, b.appended = none;
    REQUIRE(dev::compress(nullptr, bytes, b, policies).ok());
    device_buffer idle_temp(g.mr, bytes);
    REQUIRE(dev::compress(idle_temp.data, bytes, b, policies).ok());
    const dev::status idle = dev::read_status(idle_temp.data);
    CHECK(idle.code == dev::errc::not_finite);
    CHECK(idle.at == 1);
    g.require_unchanged();
  }
}

TEST_CASE("budget 0 empties a head; the workspace may start at any address" * doctest::skip(no_gpu())) {
  fixture f(3), g(3);
  f.budgets = g.budgets = {0, 16, 0};
  std::vector<index_t> out(3, -1);
  auto b = f.batch();
  b.lengths_out = out;
  REQUIRE(run(f, b).ok());
  CHECK(out == std::vector<index_t>{0, 16, 0});
  // The same call with the workspace 4 bytes past a 256-byte boundary and exactly the queried
  // bytes: the same result.
  std::size_t bytes = 0;
  REQUIRE(dev::compress(nullptr, bytes, g.batch(), key_norm_policies).ok());
  device_buffer temp(g.mr, bytes + 4);
  REQUIRE(dev::compress(static_cast<std::byte*>(temp.data) + 4, bytes, g.batch(), key_norm_policies).ok());
  REQUIRE(dev::read_status(static_cast<std::byte*>(temp.data) + 4).ok());
  for (std::size_t i = 0; i < 3; ++i) {
    host_image<__half, layouts::nhd> x, y;
    clone(f.before[i], x), clone(f.before[i], y);
    f.images[i]->download(x), g.images[i]->download(y);
    CHECK(compare_storage(x, y) == "");
  }
  // A protected token where nothing is kept is one too many.
  f.before[2].view.meta_at(3, 1).is_protected = true;
  f.reupload();
  const dev::status s = run(f, f.batch());
  CHECK(s.code == dev::errc::budget_below_protected);
  CHECK(s.at == 5);
  CHECK(s.expected == 1);
  CHECK(s.received == 0);
  f.require_unchanged();
}

TEST_CASE("workspace: size query, declared bound, no allocation per call" * doctest::skip(no_gpu())) {
  fixture f(4);
  const dev::workspace_limits limits{.max_views = 4, .num_kv_heads = fixture::heads, .head_dim = fixture::dim,
                                     .max_capacity = fixture::capacity};
  std::size_t bound = 0;
  REQUIRE(dev::workspace_bound<__half, layouts::nhd, scorers::key_norm>(limits, bound).ok());
  std::size_t exact = 0;
  REQUIRE(dev::compress(nullptr, exact, f.batch(), key_norm_policies).ok());
  CHECK(exact <= bound);
  device_buffer temp(f.mr, bound);
  std::size_t bytes = bound;
  REQUIRE(dev::compress(temp.data, bytes, f.batch(), key_norm_policies).ok());  // warm-up (module loading)
  KVCAP_TEST_CUDA(cudaDeviceSynchronize());
  f.reupload();
  std::size_t free_before = 0, free_after = 0, total = 0;
  KVCAP_TEST_CUDA(cudaMemGetInfo(&free_before, &total));
  const std::size_t allocations = f.mr.allocations(), peak = f.mr.peak_bytes();
  REQUIRE(dev::compress(temp.data, bytes, f.batch(), key_norm_policies).ok());
  KVCAP_TEST_CUDA(cudaDeviceSynchronize());
  KVCAP_TEST_CUDA(cudaMemGetInfo(&free_after, &total));
  CHECK(free_after == free_before);
  CHECK(f.mr.allocations() == allocations);
  CHECK(f.mr.peak_bytes() == peak);
  // The counting resource saw exactly the images and the workspace.
  std::size_t expected_bytes = bound;
  for (const auto& img : f.images) expected_bytes += 2 * img->elems * sizeof(__half) + img->metas * sizeof(token_meta);
  CHECK(f.mr.current_bytes() == expected_bytes);
}

TEST_CASE("concurrent batches on two streams" * doctest::skip(no_gpu())) {
  fixture a(3, 1), b(2, 2), a_ref(3, 1), b_ref(2, 2);
  cudaStream_t s1, s2;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  std::size_t bytes_a = 0, bytes_b = 0;
  REQUIRE(dev::compress(nullptr, bytes_a, a.batch(), key_norm_policies).ok());
  REQUIRE(dev::compress(nullptr, bytes_b, b.batch(), key_norm_policies).ok());
  device_buffer ta(a.mr, bytes_a), tb(b.mr, bytes_b);
  REQUIRE(dev::compress(ta.data, bytes_a, a.batch(), key_norm_policies, s1).ok());
  REQUIRE(dev::compress(tb.data, bytes_b, b.batch(), key_norm_policies, s2).ok());
  REQUIRE(dev::read_status(ta.data, s1).ok());
  REQUIRE(dev::read_status(tb.data, s2).ok());
  // One at a time on the default stream gives the same bytes.
  REQUIRE(run(a_ref, a_ref.batch()).ok());
  REQUIRE(run(b_ref, b_ref.batch()).ok());
  for (std::size_t i = 0; i < 3; ++i) {
    host_image<__half, layouts::nhd> x, y;
    clone(a.before[i], x), clone(a.before[i], y);
    a.images[i]->download(x), a_ref.images[i]->download(y);
    CHECK(compare_storage(x, y) == "");
  }
  for (std::size_t i = 0; i < 2; ++i) {
    host_image<__half, layouts::nhd> x, y;
    clone(b.before[i], x), clone(b.before[i], y);
    b.images[i]->download(x), b_ref.images[i]->download(y);
    CHECK(compare_storage(x, y) == "");
  }
  KVCAP_TEST_CUDA(cudaStreamDestroy(s1));
  KVCAP_TEST_CUDA(cudaStreamDestroy(s2));
}

TEST_CASE("ties go to the smaller logical index; protected and sinks first" * doctest::skip(no_gpu())) {
  // 3000 identical keys (every score ties), a few protected tokens late in the sequence.
  dev::counting_resource mr;
  constexpr index_t n = 3000, keep = 1000, heads = 3, dim = 16;
  host_image<__half, layouts::paged_nhd> h;
  rng r(3);
  arrange(h, r, n, heads, dim);
  for (index_t head = 0; head < heads; ++head)
    for (index_t tok = 0; tok < n; ++tok) {
      token_meta m = structures::sequence{.length = n}.meta(tok);
      m.is_protected = tok % 1000 == 999;
      h.view.meta_at(tok, head) = m;
      for (index_t d = 0; d < dim; ++d) {
        h.view.k[h.view.mapping(tok, head) + d] = __float2half(d % 2 ? -0.f : 0.f);  // all |k| = 0, ±0 mixed
        h.view.v[h.view.mapping(tok, head) + d] = __float2half(static_cast<float>(tok));
      }
    }
  device_image<__half, layouts::paged_nhd> img(mr, h);
  img.view.length = n;
  const std::vector<layer_view<__half, layouts::paged_nhd>> views{img.view};
  const std::vector<index_t> budgets{keep};
  const dev::compress_batch<__half, layouts::paged_nhd> batch{views, budgets};
  const dev::compress_policies<scorers::key_norm> policies{};
  std::size_t bytes = 0;
  REQUIRE(dev::compress(nullptr, bytes, batch, policies).ok());
  device_buffer temp(mr, bytes);
  REQUIRE(dev::compress(temp.data, bytes, batch, policies).ok());
  REQUIRE(dev::read_status(temp.data).ok());
  host_image<__half, layouts::paged_nhd> got;
  clone(h, got);
  img.download(got);
  for (index_t head = 0; head < heads; ++head) {
    // Kept: the 3 protected (999, 1999, 2999) and the 997 smallest indices, in order.
    for (index_t tok = 0; tok < 997; ++tok) REQUIRE(got.view.meta_at(tok, head).index == tok);
    CHECK(got.view.meta_at(997, head).index == 999);
    CHECK(got.view.meta_at(998, head).index == 1999);
    CHECK(got.view.meta_at(999, head).index == 2999);
    CHECK(__half2float(got.view.v[got.view.mapping(998, head)]) == 1999.f);
  }
}

TEST_CASE("the same call twice gives the same bytes" * doctest::skip(no_gpu())) {
  fixture a(4, 9), b(4, 9);
  REQUIRE(run(a, a.batch()).ok());
  REQUIRE(run(b, b.batch()).ok());
  for (std::size_t i = 0; i < 4; ++i) {
    host_image<__half, layouts::nhd> x, y;
    clone(a.before[i], x), clone(a.before[i], y);
    a.images[i]->download(x), b.images[i]->download(y);
    CHECK(compare_storage(x, y) == "");
  }
}

TEST_CASE("nothing to compress: an empty batch and segments within budget" * doctest::skip(no_gpu())) {
  fixture f(2);
  dev::compress_batch<__half, layouts::nhd> empty{};
  std::size_t bytes = 0;
  REQUIRE(dev::compress(nullptr, bytes, empty, key_norm_policies).ok());
  device_buffer temp(f.mr, bytes);
  REQUIRE(dev::compress(temp.data, bytes, empty, key_norm_policies).ok());
  REQUIRE(dev::read_status(temp.data).ok());
  f.budgets = {40, 100};
  std::vector<index_t> out(2, -1);
  auto b = f.batch();
  b.lengths_out = out;
  REQUIRE(run(f, b).ok());
  CHECK(out == std::vector<index_t>{40, 40});
  f.require_unchanged();
}

namespace {
/// Counts each (tile, phase) call and stamps it with the SM's clock (`entered`, which comes
/// before the tile is known, is kept in this thread's copy until `taken`).
struct recording_probe {
  unsigned long long* stamps;  // (tile, phase)
  unsigned int* calls;
  unsigned long long entered = 0;
  __device__ void operator()(index_t tile, dev::detail::compact_phase phase) {
    atomicAdd(calls, 1u);
    const unsigned long long now = static_cast<unsigned long long>(clock64()) + 1;
    if (phase == dev::detail::compact_phase::entered) {
      if (tile == -1) entered = now;  // else left at 0: the check below fails
      return;
    }
    stamps[tile * dev::detail::compact_phases + static_cast<int>(phase)] = now;
    if (phase == dev::detail::compact_phase::taken) stamps[tile * dev::detail::compact_phases] = entered;
  }
};
}  // namespace

TEST_CASE("a compaction probe sees each tile's phases once, in order, and changes nothing" * doctest::skip(no_gpu())) {
  fixture probed(3, 11), plain(3, 11);
  REQUIRE(run(plain, plain.batch()).ok());

  // The same call as dev::compress, stage by stage, with the probe on the compaction.
  const auto b = probed.batch();
  dev::plan_totals p;
  REQUIRE(dev::plan(b, p, dev::needs_of<scorers::key_norm>).ok());
  REQUIRE(p.tiles > 0);
  std::size_t bytes = 0;
  REQUIRE(dev::workspace_bytes<__half, layouts::nhd>(p, dev::needs_of<scorers::key_norm>, bytes).ok());
  device_buffer temp(probed.mr, bytes);
  workspace_carver w(temp.data);
  const auto ws = dev::carve<__half, layouts::nhd>(w, p, dev::needs_of<scorers::key_norm>);
  const auto tiles = static_cast<std::size_t>(p.tiles), words = tiles * dev::detail::compact_phases;
  device_buffer stamps(probed.mr, words * sizeof(unsigned long long)), calls(probed.mr, sizeof(unsigned int));
  KVCAP_TEST_CUDA(cudaMemset(stamps.data, 0, words * sizeof(unsigned long long)));
  KVCAP_TEST_CUDA(cudaMemset(calls.data, 0, sizeof(unsigned int)));
  const recording_probe probe{static_cast<unsigned long long*>(stamps.data), static_cast<unsigned int*>(calls.data)};
  REQUIRE(dev::detail::enqueue_upload(ws, p, b, 0).ok());
  REQUIRE(dev::detail::enqueue_scores(ws, p, key_norm_policies, 0).ok());
  REQUIRE(dev::detail::enqueue_select(ws, p, 0).ok());
  REQUIRE(dev::detail::enqueue_compact(ws, p, b, 0, probe).ok());
  KVCAP_TEST_CUDA(cudaDeviceSynchronize());
  REQUIRE(dev::read_status(temp.data).ok());

  std::vector<unsigned long long> got(words);
  unsigned int got_calls = 0;
  KVCAP_TEST_CUDA(cudaMemcpy(got.data(), stamps.data, words * sizeof(unsigned long long), cudaMemcpyDeviceToHost));
  KVCAP_TEST_CUDA(cudaMemcpy(&got_calls, calls.data, sizeof got_calls, cudaMemcpyDeviceToHost));
  CHECK(got_calls == words);
  for (std::size_t g = 0; g < tiles; ++g)
    for (int phase = 0; phase < dev::detail::compact_phases; ++phase) {
      const unsigned long long now = got[g * dev::detail::compact_phases + phase];
      CHECK(now != 0);
      if (phase > 0) CHECK(now >= got[g * dev::detail::compact_phases + phase - 1]);
    }
  for (std::size_t i = 0; i < 3; ++i) {
    host_image<__half, layouts::nhd> x, y;
    clone(probed.before[i], x), clone(probed.before[i], y);
    probed.images[i]->download(x), plain.images[i]->download(y);
    CHECK(compare_storage(x, y) == "");
  }
}
