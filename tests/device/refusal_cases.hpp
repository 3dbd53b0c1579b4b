#pragma once
// tests/device/refusal_cases.hpp — the batches that both device executors must refuse,
// written once. The reference (test_device_reference.cpp, on the CPU) and the device executor
// (test_device_errors.cu, on a GPU and on the SIMT emulator) each build a batch of their own
// `refusal_views` full caches (a budget below the capacity, `heads` ≥ 2), apply each case's
// edit, and check the status field by field and that nothing moved. A refusal that only one
// executor can meet (a paged mapping, a short workspace, a metadata check on the device)
// stays with its test.

#include <functional>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include <kvcap/device/ragged_plan.cuh>

namespace kvcap_test {

/// Views in the batch every refusal case edits.
inline constexpr kvcap::index_t refusal_views = 3;

/// A batch a case may edit, with storage for the spans it adds.
template <class T, class Layout>
struct refusal_batch {
  std::vector<kvcap::layer_view<T, Layout>> views;
  std::vector<kvcap::index_t> budgets, head_lengths, head_budgets, appended, lengths_out;

  refusal_batch(std::vector<kvcap::layer_view<T, Layout>> v, std::vector<kvcap::index_t> b)
      : views(std::move(v)), budgets(std::move(b)) {}

  kvcap::index_t heads() const { return views.front().mapping.num_heads; }
  kvcap::index_t capacity() const { return views.front().mapping.capacity; }
  kvcap::index_t segments() const { return refusal_views * heads(); }
  kvcap::device::compress_batch<T, Layout> batch() {
    kvcap::device::compress_batch<T, Layout> b{views, budgets};
    b.head_lengths = head_lengths;
    b.head_budgets = head_budgets;
    b.appended = appended;
    b.lengths_out = lengths_out;
    return b;
  }
};

/// What a refused call must return: the code, the argument's name, the view or segment it
/// names, and (where the case fixes it) the expected value.
struct refusal {
  const char* edit;  ///< what the case does to a valid batch, in words
  kvcap::device::errc code;
  const char* argument;
  kvcap::index_t at;
  kvcap::index_t expected = any_expected;
  static constexpr kvcap::index_t any_expected = std::numeric_limits<kvcap::index_t>::min();
};

template <class T, class Layout>
struct refusal_case {
  refusal expect;
  std::function<void(refusal_batch<T, Layout>&)> apply;
};

/// The cases, for caches of element type T: each edits a valid batch (refusal_views full
/// views, `heads` heads, every budget below the capacity) into one the plan refuses.
template <class T, class Layout>
std::vector<refusal_case<T, Layout>> refusal_cases() {
  using kvcap::index_t;
  using kvcap::device::errc;
  using batch = refusal_batch<T, Layout>;
  static_assert(refusal_views == 3, "the cases below name views 0 to 2");
  constexpr index_t widest = kvcap::device::max_head_dim_for(static_cast<index_t>(sizeof(T)));
  return {
      {{"a budget missing", errc::invalid_argument, "budgets.size()", -1, refusal_views},
       [](batch& b) { b.budgets.pop_back(); }},
      {{"a negative budget", errc::invalid_argument, "budgets[]", 1, 0}, [](batch& b) { b.budgets[1] = -1; }},
      {{"a length past the capacity", errc::capacity_exceeded, "views[].length", 2},
       [](batch& b) { b.views[2].length = b.capacity() + 1; }},
      {{"a negative length", errc::capacity_exceeded, "views[].length", 1}, [](batch& b) { b.views[1].length = -1; }},
      {{"no V", errc::invalid_argument, "views[].k, v, meta (non-null)", 1}, [](batch& b) { b.views[1].v = nullptr; }},
      {{"no metadata", errc::invalid_argument, "views[].k, v, meta (non-null)", 0},
       [](batch& b) { b.views[0].meta = nullptr; }},
      {{"a view with fewer heads", errc::shape_mismatch, "views[].mapping.num_heads", 2},
       [](batch& b) { b.views[2].mapping.num_heads = 1; }},
      {{"a view with wider heads", errc::shape_mismatch, "views[].mapping.head_dim", 1},
       [](batch& b) { b.views[1].mapping.head_dim += 1; }},
      {{"rows one element past the staging", errc::invalid_argument,
        "views[].mapping.head_dim (a K and a V row fit 40 KiB)", 0, widest},
       [](batch& b) {
         for (auto& v : b.views) v.mapping.head_dim = widest + 1;
       }},
      {{"views × heads past any workspace (refused before the product wraps)", errc::capacity_exceeded,
        "views[].mapping.num_heads (views × heads)", 0, kvcap::device::max_plan_items / refusal_views},
       [](batch& b) {
         for (auto& v : b.views) v.mapping.num_heads = kvcap::device::max_plan_items;
       }},
      {{"a capacity past the rank keys' slots", errc::capacity_exceeded, "views[].mapping.capacity", 1,
        kvcap::device::max_segment_slots - 1},
       [](batch& b) { b.views[1].mapping.capacity = kvcap::device::max_segment_slots; }},
      {{"per-head lengths, one missing", errc::invalid_argument, "head_lengths.size()", -1},
       [](batch& b) { b.head_lengths.assign(static_cast<std::size_t>(b.segments() - 1), b.capacity()); }},
      {{"a per-head length past the capacity", errc::capacity_exceeded, "head_lengths[]", 3},
       [](batch& b) {
         b.head_lengths.assign(static_cast<std::size_t>(b.segments()), b.capacity());
         b.head_lengths[3] = b.capacity() + 1;
       }},
      {{"a negative per-head length", errc::capacity_exceeded, "head_lengths[]", 2},
       [](batch& b) {
         b.head_lengths.assign(static_cast<std::size_t>(b.segments()), 0);
         b.head_lengths[2] = -1;
       }},
      {{"a negative per-head budget", errc::invalid_argument, "head_budgets[]", 2, 0},
       [](batch& b) {
         b.head_budgets.assign(static_cast<std::size_t>(b.segments()), 1);
         b.head_budgets[2] = -1;
         b.budgets.clear();
       }},
      {{"lengths_out one too long", errc::invalid_argument, "lengths_out.size()", -1, refusal_views},
       [](batch& b) { b.lengths_out.assign(refusal_views + 1, 0); }},
      {{"appended, one missing", errc::invalid_argument, "appended.size()", -1, refusal_views},
       [](batch& b) { b.appended.assign(refusal_views - 1, 1); }},
      {{"a negative appended count", errc::invalid_argument, "appended[]", 1, 0},
       [](batch& b) { b.appended = {1, -1, 1}; }},
      {{"more appended than a view holds", errc::capacity_exceeded, "appended[] (<= every head's resident tokens)", 0},
       [](batch& b) { b.appended = {b.capacity() + 1, 1, 1}; }},
      {{"more appended than a short head holds", errc::capacity_exceeded,
        "appended[] (<= every head's resident tokens)", 2, 2},
       [](batch& b) {
         b.head_lengths.assign(static_cast<std::size_t>(b.segments()), b.capacity());
         b.head_lengths.back() = 2;  // view 2's last head
         b.appended = {3, 3, 3};
       }},
  };
}

}  // namespace kvcap_test
