// tests/device/test_device_api.cu — the device entry point's host half, compiled by nvcc and
// run without a GPU: the size query agrees with the host reference's carve, and invalid
// batches are refused before any CUDA call (nothing here touches a device).

#include <doctest/doctest.h>

#include <cuda_fp16.h>
#include <kvcap/device.cuh>

#include "harness.hpp"

using namespace kvcap;
using namespace kvcap_test;
namespace dev = kvcap::device;

namespace {
// Host memory stands in for device memory: these calls must never dereference it.
struct fake_batch {
  std::vector<__half> k, v;
  std::vector<token_meta> meta;
  std::vector<layer_view<__half, layouts::paged_hnd>> views;
  std::vector<index_t> budgets;
  fake_batch() : k(4 * 16 * 2 * 8), v(k.size()), meta(64 * 2) {
    for (index_t i = 0; i < 3; ++i) {
      layer_view<__half, layouts::paged_hnd> view{k.data(), v.data(), meta.data(),
                                                 make_mapping<layouts::paged_hnd>(64, 2, 8), 50 + i};
      views.push_back(view);
      budgets.push_back(20 + 10 * i);
    }
  }
  dev::compress_batch<__half, layouts::paged_hnd> batch() { return {views, budgets}; }
};
using policies = dev::compress_policies<scorers::forced_keep<scorers::key_diff>>;
}  // namespace

TEST_CASE("the size query is the reference's carve and stays within the bound") {
  fake_batch f;
  std::size_t device_bytes = 0, reference_bytes = 0;
  REQUIRE(dev::compress(nullptr, device_bytes, f.batch(), policies{}).ok());
  REQUIRE(dev::reference::compress(nullptr, reference_bytes, f.batch(), policies{}).ok());
  CHECK(device_bytes == reference_bytes);
  std::size_t bound = 0;
  REQUIRE(dev::workspace_bound<__half, layouts::paged_hnd, policies::scorer_type>(
              {.max_views = 3, .num_kv_heads = 2, .head_dim = 8, .max_capacity = 64}, bound)
              .ok());
  CHECK(device_bytes <= bound);
}

TEST_CASE("a merging reducer's workspace holds its lists, and its bound counts them") {
  // reducers::merge runs in rounds on the device (reduce_rounds.cuh): a dropped-token entry and
  // a claim per slot of every active segment.
  using merging = dev::compress_policies<policies::scorer_type, structures::sequence, reducers::merge>;
  fake_batch f;
  std::size_t merge_bytes = 0, reference_bytes = 0, evict_bytes = 0;
  REQUIRE(dev::compress(nullptr, merge_bytes, f.batch(), merging{}).ok());
  REQUIRE(dev::reference::compress(nullptr, reference_bytes, f.batch(), merging{}).ok());
  REQUIRE(dev::compress(nullptr, evict_bytes, f.batch(), policies{}).ok());
  CHECK(merge_bytes == reference_bytes);
  dev::plan_totals p;
  REQUIRE(dev::plan(f.batch(), p).ok());
  CHECK(merge_bytes >= evict_bytes + static_cast<std::size_t>(p.tokens) * (sizeof(dev::dropped_token) + sizeof(std::int32_t)));
  const dev::workspace_limits limits{.max_views = 3, .num_kv_heads = 2, .head_dim = 8, .max_capacity = 64};
  std::size_t merge_bound = 0, evict_bound = 0;
  REQUIRE(dev::workspace_bound<__half, layouts::paged_hnd, policies::scorer_type, reducers::merge>(limits, merge_bound).ok());
  REQUIRE(dev::workspace_bound<__half, layouts::paged_hnd, policies::scorer_type>(limits, evict_bound).ok());
  CHECK(merge_bytes <= merge_bound);
  CHECK(merge_bytes > evict_bound);
}

TEST_CASE("invalid batches are refused on the host, before anything is enqueued") {
  void* not_device_memory = reinterpret_cast<void*>(std::uintptr_t{256});
  std::size_t bytes = std::size_t{1} << 30;
  {
    fake_batch f;
    f.budgets[1] = -3;
    const auto s = dev::compress(not_device_memory, bytes, f.batch(), policies{});
    CHECK(s.code == dev::errc::invalid_argument);
    CHECK(std::string(s.argument) == "budgets[]");
    CHECK(s.at == 1);
    CHECK(s.received == -3);
  }
  {
    fake_batch f;
    f.views[2].mapping.page_size = 0;
    const auto s = dev::compress(not_device_memory, bytes, f.batch(), policies{});
    CHECK(s.code == dev::errc::invalid_argument);
    CHECK(std::string(s.argument) == "views[].mapping.page_size");
  }
  {
    fake_batch f;
    f.views[0].length = 65;
    const auto s = dev::compress(not_device_memory, bytes, f.batch(), policies{});
    CHECK(s.code == dev::errc::capacity_exceeded);
    CHECK(s.expected == 64);
  }
  {
    fake_batch f;
    std::size_t need = 0;
    REQUIRE(dev::compress(nullptr, need, f.batch(), policies{}).ok());
    std::size_t small = need - 256;
    const auto s = dev::compress(not_device_memory, small, f.batch(), policies{});
    CHECK(s.code == dev::errc::workspace_too_small);
    CHECK(s.expected == static_cast<index_t>(need));
  }
}

TEST_CASE("window scorers and the merge reducer: the size query, the bound, and refused windows") {
  using window_policies = dev::compress_policies<scorers::observation_window, structures::sequence, reducers::merge>;
  fake_batch f;
  std::vector<__half> queries(4 * 6 * 8);  // 4 queries × 6 query heads (GQA 3) × 8 dims
  const kv_tensor<const __half> window{queries.data(), 4, 6, 8};
  const std::vector<kv_tensor<const __half>> windows(3, window);
  auto b = f.batch();
  b.windows = windows;
  std::size_t device_bytes = 0, reference_bytes = 0;
  REQUIRE(dev::compress(nullptr, device_bytes, b, window_policies{}).ok());
  REQUIRE(dev::reference::compress(nullptr, reference_bytes, b, window_policies{}).ok());
  CHECK(device_bytes == reference_bytes);
  std::size_t plain_bytes = 0;
  REQUIRE(dev::compress(nullptr, plain_bytes, f.batch(), policies{}).ok());
  CHECK(device_bytes > plain_bytes);  // window copies, row statistics and masses; the merge's lists
  std::size_t bound = 0;
  REQUIRE(dev::workspace_bound<__half, layouts::paged_hnd, scorers::observation_window, reducers::merge>(
              {.max_views = 3, .num_kv_heads = 2, .head_dim = 8, .max_capacity = 64, .max_window_rows = 4 * 3}, bound)
              .ok());
  CHECK(device_bytes <= bound);
  // Without windows, a window scorer is refused on the host, before anything is enqueued.
  void* not_device_memory = reinterpret_cast<void*>(std::uintptr_t{256});
  std::size_t bytes = std::size_t{1} << 30;
  const auto s = dev::compress(not_device_memory, bytes, f.batch(), window_policies{});
  CHECK(s.code == dev::errc::invalid_argument);
  CHECK(std::string(s.argument) == "windows.size() (a window scorer needs one window per view)");
  CHECK(s.expected == 3);
  CHECK(s.received == 0);
}
