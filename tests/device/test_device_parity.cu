// tests/device/test_device_parity.cu — the device executor keeps exactly what the host
// executor keeps: thousands of randomized ragged batches across layouts (contiguous NHD/HND,
// shuffled page pools of random page size, padded per-head runs, and one written outside
// kvcap with K and V in one buffer), element types, scorers (kvcap's and one written outside
// it; single, structure-aware, composite, forced keep), budgets, chunk histories, value
// distributions built for ties (small integers, duplicate rows, ±0, overflow to inf/NaN),
// protected tokens, and the merge reducer. The whole storage is compared after each call, so
// a stray write anywhere (other heads, unused pages, gaps between heads, slots past the new
// length) fails too.

#include "../extension/key_peak.hpp"
#include "../extension/kv_fused.hpp"
#include "device_harness.cuh"
#include "shared_heads_case.hpp"
#include "shared_heads_hand.hpp"

using namespace kvcap;
using namespace kvcap_test;
namespace dev = kvcap::device;

namespace {

struct case_limits {
  index_t max_heads = 4, max_requests = 5, max_budget = 40, max_chunk = 30;
  std::vector<index_t> dims = {1, 2, 3, 4, 5, 8, 16, 32, 64, 128};
  index_t min_budget = 1, min_chunk = 0;  ///< the last chunk holds at least min_chunk tokens
};

/// `w` with its queries copied to device memory, which `memory` then holds (a window without
/// queries as it is).
template <class T>
kv_tensor<const T> window_on_device(dev::counting_resource& mr, kv_tensor<const T> w,
                                    std::vector<std::unique_ptr<device_buffer>>& memory) {
  if (w.data == nullptr) return w;
  const std::size_t bytes = static_cast<std::size_t>(w.size()) * sizeof(T);
  memory.push_back(std::make_unique<device_buffer>(mr, bytes));
  KVCAP_TEST_CUDA(cudaMemcpy(memory.back()->data, w.data, bytes, cudaMemcpyHostToDevice));
  w.data = static_cast<const T*>(memory.back()->data);
  return w;
}

/// `Tune`: the launch choices (dev::detail::tuning); other values than the library's go
/// through detail::compress_with and must leave the same caches.
template <class T, class Layout, class Scorer, class Reducer = reducers::evict, dev::detail::tuning Tune = dev::detail::tuning{}>
void device_matches_host(rng& r, cudaStream_t stream, const case_limits& limits) {
  using Structure = structure_for<Scorer>;
  constexpr bool windowed = Scorer::inputs.window_mass;
  dev::counting_resource mr;
  const index_t heads = r.between(1, limits.max_heads), num_requests = r.between(1, limits.max_requests);
  const index_t group = windowed ? r.between(1, 4) : 1;  // GQA
  const bool causal = !windowed || r.chance(0.7);
  const index_t dim = limits.dims[static_cast<std::size_t>(r.between(0, static_cast<index_t>(limits.dims.size()) - 1))];
  const dev::compress_policies<Scorer, Structure, Reducer> policies{make_scorer<Scorer>(r), make_structure<Structure>(r)};
  std::vector<host_request<T, Layout, Scorer, Structure, Reducer>> requests(static_cast<std::size_t>(num_requests));
  std::vector<host_image<T, Layout>> before(requests.size()), expected(requests.size()), got(requests.size());
  std::vector<std::unique_ptr<device_image<T, Layout>>> images;
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets, lengths_out(requests.size(), -1), appended;
  std::vector<std::unique_ptr<device_buffer>> window_memory;
  std::vector<kv_tensor<const T>> windows;
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    q.drive(r, heads, dim, policies.scorer, policies.structure, limits.max_budget, limits.max_chunk, group, causal,
            limits.min_budget, limits.min_chunk);
    appended.push_back(q.last_chunk);
    const auto& host_view = q.c->layer(0);
    arrange(before[i], r, host_view.capacity(), heads, dim);
    copy_tokens(host_view, before[i].view, std::vector<index_t>(static_cast<std::size_t>(heads), host_view.length));
    images.push_back(std::make_unique<device_image<T, Layout>>(mr, before[i]));
    images.back()->view.length = host_view.length;
    views.push_back(images.back()->view);
    budgets.push_back(q.budget);
    q.next_window(r);
    windows.push_back(window_on_device(mr, q.window, window_memory));  // the same queries
  }
  dev::compress_batch<T, Layout> batch{views, budgets};
  batch.lengths_out = lengths_out;
  if (windowed) batch.windows = windows, batch.window_is_chunk_tail = causal;
  if ((num_requests + heads) % 2 == 0) batch.appended = appended;  // else every resident slot is checked
  const auto compress = [&](void* temp, std::size_t& bytes) {
    if constexpr (Tune == dev::detail::tuning{}) return dev::compress(temp, bytes, batch, policies, stream);
    else return dev::detail::compress_with<Tune>(temp, bytes, batch, policies, stream);
  };
  std::size_t bytes = 0;
  REQUIRE(compress(nullptr, bytes).ok());
  device_buffer temp(mr, bytes);
  const dev::status s = compress(temp.data, bytes);
  INFO("status ", std::string(dev::to_string(s.code)), " ", std::string(s.argument ? s.argument : ""), " at ", s.at);
  REQUIRE(s.ok());
  REQUIRE(dev::read_status(temp.data, stream).ok());
  for (index_t i = 0; i < num_requests; ++i) {
    auto& q = requests[i];
    const auto& host_view = q.c->layer(0);
    const std::vector<index_t> lengths_before(static_cast<std::size_t>(heads), host_view.length);
    const auto scores = window_scores_before_compress(q, policies, causal);  // for near-ties
    q.compress();
    const std::vector<index_t> lengths(static_cast<std::size_t>(heads), host_view.length);
    clone(before[i], expected[i]);
    copy_tokens(host_view, expected[i].view, lengths);
    add_left_behind_rows(before[i].view, lengths_before, host_view, lengths, expected[i].view);
    clone(before[i], got[i]);
    images[i]->download(got[i]);
    INFO(std::string(layout_name<Layout>()), " request ", i, " of ", num_requests, ", dim ", dim, ", heads ", heads,
         ", budget ", q.budget, ", mode ", static_cast<int>(q.mode));
    REQUIRE(lengths_out[i] == host_view.length);
    index_t near_ties = 0;
    if (!scores.empty())  // kept sets equal up to near-ties; kept rows intact and in order
      REQUIRE(compare_kept_near_ties(before[i].view, lengths_before, scores, expected[i].view, lengths, got[i].view,
                                     lengths, false, 1e-4f, near_ties) == "");
    if (near_ties > 0) continue;
    REQUIRE(compare_tokens(expected[i].view, got[i].view, lengths) == "");
    REQUIRE(compare_storage(expected[i], got[i]) == "");
  }
}

template <class T, class Layout, class... Scorers>
void each_scorer(std::uint64_t seed, int cases, const case_limits& limits = {}) {
  rng r(seed);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int c = 0; c < scaled(cases); ++c) (device_matches_host<T, Layout, Scorers>(r, stream, limits), ...);
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

using blend_norms = scorers::blend<scorers::key_norm, scorers::value_norm>;

/// The merge without its promise of locality: the device then walks each segment's dropped
/// tokens in slot order on one warp (reduce_kernel.cuh), the path of any merging reducer that
/// is not local.
struct walked_merge : reducers::merge {
  static constexpr bool local = false;
};
static_assert(reducer<walked_merge> && !dev::is_local_reducer<walked_merge>);

}  // namespace

// 10 scorers × 60 batches × 2 layouts + 4 scorers × 60 batches × 3 layouts = 1920 batches
// (≈ 5800 requests, ≈ 15 000 (request, head) segments) in half precision.
TEST_CASE_TEMPLATE("device keeps what the host keeps: every scorer" * doctest::skip(no_gpu()), Layout, layouts::nhd,
                   layouts::paged_nhd) {
  each_scorer<__half, Layout, scorers::key_norm, scorers::value_norm, scorers::recency, scorers::key_diff,
              scorers::forced_keep<scorers::key_diff>, scorers::temporal_redundancy, scorers::spatial_redundancy,
              scorers::pooled_value_norm, blend_norms, scorers::forced_keep<blend_norms>>(11, 60);
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: every layout" * doctest::skip(no_gpu()), Layout, layouts::hnd,
                   layouts::paged_hnd, layouts::varlen) {
  each_scorer<__half, Layout, scorers::key_norm, scorers::key_diff, scorers::spatial_redundancy,
              scorers::forced_keep<blend_norms>>(12, 60);
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: float" * doctest::skip(no_gpu()), Layout, layouts::nhd,
                   layouts::hnd, layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  each_scorer<float, Layout, scorers::key_diff, scorers::recency>(13, 60);
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: bfloat16" * doctest::skip(no_gpu()), Layout, layouts::nhd,
                   layouts::paged_hnd, layouts::varlen) {
  // __nv_bfloat16, the storage of most current models' caches, on both executors: float's
  // exponent range, so the huge values overflow the float sums as float storage does, and 8
  // significand bits, so rounded K and V tie more often than half's. The merge folds in float
  // and rounds each sum to bfloat16 on both.
  each_scorer<__nv_bfloat16, Layout, scorers::key_norm, scorers::value_norm, scorers::recency, scorers::key_diff,
              scorers::spatial_redundancy, scorers::forced_keep<blend_norms>>(19, 30);
  rng r(20);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int c = 0; c < scaled(20); ++c) {
    device_matches_host<__nv_bfloat16, Layout, scorers::key_norm, reducers::merge>(r, stream, {});
    device_matches_host<__nv_bfloat16, Layout, scorers::observation_window>(r, stream, {});
  }
  device_matches_host<__nv_bfloat16, Layout, scorers::key_diff>(
      r, stream, {.max_heads = 8, .max_requests = 4, .max_budget = 2000, .max_chunk = 800, .dims = {64, 128}});
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: a scorer and a layout written outside kvcap" *
                       doctest::skip(no_gpu()),
                   T, __half, float) {
  // tests/extension: user::key_peak (a scorer) and user::kv_fused (a layout whose K and V share
  // one buffer, each token's row holding its K and then its V), each one header of its own and
  // no edit in include/kvcap. The kernels compact K and V in place in that one buffer; the
  // whole buffer is compared, so a write into the other tensor's half of a row fails. The
  // small-integer cases tie many peaks.
  each_scorer<T, user::kv_fused, user::key_peak, scorers::key_norm, scorers::key_diff, blend_norms>(41, 40);
  each_scorer<T, layouts::paged_hnd, user::key_peak>(42, 40);
  each_scorer<T, layouts::varlen, user::key_peak>(43, 20);
  rng r(44);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int c = 0; c < scaled(20); ++c) {
    device_matches_host<T, user::kv_fused, user::key_peak, reducers::merge>(r, stream, {});
    device_matches_host<T, user::kv_fused, scorers::observation_window>(r, stream, {});
  }
  device_matches_host<T, user::kv_fused, user::key_peak>(
      r, stream, {.max_heads = 8, .max_requests = 4, .max_budget = 2000, .max_chunk = 800, .dims = {64, 128}});
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: long segments, many tiles" * doctest::skip(no_gpu()), Layout,
                   layouts::nhd, layouts::paged_nhd) {
  // Budgets up to 3000 and chunks up to 800: dozens of compaction tiles per segment, whose
  // destinations overlap earlier tiles (the read-before-write hand-off between blocks).
  each_scorer<__half, Layout, scorers::key_norm, scorers::recency, scorers::key_diff>(
      14, 8, {.max_heads = 8, .max_requests = 4, .max_budget = 3000, .max_chunk = 800, .dims = {64, 128}});
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: other copy batches of the compaction" * doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::paged_hnd) {
  // The compaction's copy batch (the vectors of K and of V a thread loads before it stores
  // any) changes when loads are issued, not what is written: 1, 2 and 8 (the library's is 4).
  // Rows of 64 and 128 dims give tiles of more vectors than a batch of the block's threads
  // holds, over dozens of tiles a segment whose destinations overlap earlier tiles (recency
  // moves every kept row); rows of 1 to 8 dims take the narrower vectors (2 to 16 bytes).
  rng r(18);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  using dev::detail::tuning;
  const case_limits wide{.max_heads = 4, .max_requests = 3, .max_budget = 1500, .max_chunk = 500, .dims = {64, 128},
                         .min_budget = 500, .min_chunk = 100};
  const case_limits narrow{.max_heads = 4, .max_requests = 3, .max_budget = 300, .max_chunk = 100, .dims = {1, 3, 4, 8}};
  for (int c = 0; c < scaled(3); ++c) {
    device_matches_host<__half, Layout, scorers::recency, reducers::evict, tuning{.copy_batch = 1}>(r, stream, wide);
    device_matches_host<__half, Layout, scorers::key_norm, reducers::evict, tuning{.copy_batch = 2}>(r, stream, wide);
    device_matches_host<__half, Layout, scorers::recency, reducers::evict, tuning{.copy_batch = 8}>(r, stream, wide);
    device_matches_host<__half, Layout, scorers::key_norm, reducers::evict, tuning{.copy_batch = 1}>(r, stream, narrow);
    device_matches_host<__half, Layout, scorers::recency, reducers::evict, tuning{.copy_batch = 8}>(r, stream, narrow);
  }
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("device keeps what the host keeps: head dims 80 to 256, segments of thousands of slots" *
                       doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::paged_hnd) {
  // The edges of the kernels that stage through shared memory: head dims whose last 32-dim
  // block of the mean unit key is partly empty (80, 96, 160), the window's widest rows (256:
  // 8 elements a lane, 8 query rows a block), and segments long enough that the mean (256
  // slots a tile) and the composite statistics (1,024) span several staged tiles.
  const case_limits wide{.max_heads = 4, .max_requests = 3, .max_budget = 2500, .max_chunk = 600, .dims = {80, 96, 160, 256}};
  each_scorer<__half, Layout, scorers::key_diff, blend_norms, scorers::observation_window>(17, 6, wide);
  each_scorer<float, Layout, scorers::key_diff, scorers::observation_window>(18, 6, wide);
}

TEST_CASE_TEMPLATE("device merges what the host merges" * doctest::skip(no_gpu()), Layout, layouts::nhd, layouts::hnd,
                   layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  // The device's merge (reducers::merge in rounds, a warp per turn: reduce_rounds.cuh) against
  // the host's slot-order walk on one thread: K, V and sizes bit for bit, half and float, over
  // several compress rounds. Drops spread over the segment (key norm, KeyDiff: many turns a
  // round), drops next to structure neighbours (spatial), and recency's run of drops between
  // the same two kept slots (each turn waits for the one before: the rounds hand over to the
  // slot-order walk at once).
  rng r(15);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int c = 0; c < scaled(40); ++c) {
    device_matches_host<__half, Layout, scorers::key_norm, reducers::merge>(r, stream, {});
    device_matches_host<__half, Layout, scorers::spatial_redundancy, reducers::merge>(r, stream, {});
    device_matches_host<float, Layout, scorers::key_diff, reducers::merge>(r, stream, {});
    device_matches_host<__half, Layout, scorers::recency, reducers::merge>(r, stream, {});
    device_matches_host<__half, Layout, scorers::spatial_redundancy, walked_merge>(r, stream, {});
  }
  device_matches_host<__half, Layout, scorers::spatial_redundancy, reducers::merge>(
      r, stream, {.max_heads = 8, .max_requests = 4, .max_budget = 2000, .max_chunk = 800, .dims = {64, 128}});
  // Runs of hundreds of drops over small budgets: whole stretches of the list's warps without a
  // kept slot, across which the nearest kept slot before is carried.
  for (int c = 0; c < scaled(4); ++c)
    device_matches_host<__half, Layout, scorers::recency, reducers::merge>(
        r, stream, {.max_heads = 2, .max_requests = 3, .max_budget = 40, .max_chunk = 300, .dims = {8, 32}});
  // Chunks of 2,000 to 2,500 tokens over budgets of 6,000 to 6,500: mostly kept slots between
  // the drops, so a round readies more turns than it holds (rounds_ready_capacity, 1,024),
  // and the rest wait for the next.
  device_matches_host<__half, Layout, scorers::key_norm, reducers::merge>(
      r, stream, {.max_heads = 2, .max_requests = 1, .max_budget = 6500, .max_chunk = 2500, .dims = {8, 16},
                  .min_budget = 6000, .min_chunk = 2000});
  // Rows a warp stages in its shared memory (9 float rows of 256) and rows it cannot (512:
  // 18 KiB a warp would pass the block's 48 KiB, so the keys are read where they are).
  for (int c = 0; c < scaled(4); ++c)
    device_matches_host<float, Layout, scorers::spatial_redundancy, reducers::merge>(
        r, stream, {.max_heads = 4, .max_requests = 3, .max_budget = 300, .max_chunk = 100, .dims = {80, 256, 512}});
  // Other walk thresholds leave the same caches: rounds until none is left (1), and the walk
  // right after the list (never a round shared out).
  constexpr dev::detail::tuning rounds_to_the_end{.rounds_min_ready = 1}, walk_at_once{.rounds_min_ready = 1 << 30};
  for (int c = 0; c < scaled(8); ++c) {
    device_matches_host<__half, Layout, scorers::key_norm, reducers::merge, rounds_to_the_end>(r, stream, {});
    device_matches_host<__half, Layout, scorers::spatial_redundancy, reducers::merge, rounds_to_the_end>(r, stream, {});
    device_matches_host<__half, Layout, scorers::key_norm, reducers::merge, walk_at_once>(r, stream, {});
  }
  device_matches_host<__half, Layout, scorers::key_norm, reducers::merge, rounds_to_the_end>(
      r, stream, {.max_heads = 2, .max_requests = 1, .max_budget = 1500, .max_chunk = 600, .dims = {8},
                  .min_budget = 1000, .min_chunk = 400});
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("device keeps what the host keeps by window attention (to near-ties)" * doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::hnd, layouts::paged_nhd, layouts::paged_hnd, layouts::varlen) {
  // The tiled two-pass window mass (window_kernel.cuh) against the host's Eigen window mass:
  // causal tails and proxies, GQA 1-4, 1-8 queries, pooling 0-3; half (tolerance 1e-4 on
  // scores) and float; long segments with many key tiles.
  rng r(16);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int c = 0; c < scaled(60); ++c) {
    device_matches_host<__half, Layout, scorers::observation_window>(r, stream, {});
    device_matches_host<float, Layout, scorers::observation_window>(r, stream, {});
  }
  device_matches_host<__half, Layout, scorers::observation_window>(
      r, stream, {.max_heads = 8, .max_requests = 4, .max_budget = 2000, .max_chunk = 800, .dims = {64, 128}});
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("a causal window longer than a short head: its early queries add nothing (hand-checked)" *
                       doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::varlen) {
  // Per-head lengths 6 and 4, dim 1 (logit = key: every query is 1), a causal window of 5
  // queries, one query head per kv-head. Key gaps of 20 make each softmax one-hot to float
  // precision. Head 0 (keys 0 20 40 60 80 100): query j sits at slot 1 + j and attends to it,
  // so the masses are (0, 1/5 ×5). Head 1 (keys 30 -40 -40 60): query 0 sits before slot 0,
  // sees nothing and adds nothing; queries 1-3 attend to slot 0, query 4 to slot 3. Averaged
  // over the 4 queries that see a key: (3/4, 0, 0, 1/4), summing to 1 (over all 5 it would
  // be 3/5 and 1/5). This is the host's head_adaptive case (tests/test_head_adaptive.cpp).
  using T = float;
  dev::counting_resource mr;
  rng r(31);
  host_image<T, Layout> img;
  arrange(img, r, 6, 2, 1);
  const std::vector<std::vector<float>> keys{{0, 20, 40, 60, 80, 100}, {30, -40, -40, 60}};
  const std::vector<std::vector<std::int64_t>> index{{0, 1, 2, 3, 4, 5}, {0, 1, 4, 5}};
  const structures::sequence text{.length = 100};
  for (index_t head = 0; head < 2; ++head)
    for (std::size_t tok = 0; tok < keys[head].size(); ++tok) {
      img.view.meta_at(static_cast<index_t>(tok), head) = text.meta(index[head][tok]);
      img.view.key(static_cast<index_t>(tok), head).data[0] = keys[head][tok];
      img.v[img.view.mapping(static_cast<index_t>(tok), head)] = 1.f;
    }
  device_image<T, Layout> image(mr, img);
  const std::vector<layer_view<T, Layout>> views{image.view};
  const std::vector<T> queries(7 * 2, 1.f);  // 5 queries, then 7 (refused)
  device_buffer query_memory(mr, queries.size() * sizeof(T));
  KVCAP_TEST_CUDA(cudaMemcpy(query_memory.data, queries.data(), queries.size() * sizeof(T), cudaMemcpyHostToDevice));
  const std::vector<kv_tensor<const T>> windows{{static_cast<const T*>(query_memory.data), 5, 2, 1}};
  const std::vector<index_t> head_lengths{6, 4}, head_budgets{5, 2};
  std::vector<index_t> head_out(2, -1);
  dev::compress_batch<T, Layout> batch{views, {}, head_lengths, head_budgets, {}, head_out};
  batch.windows = windows;  // causal: the chunk's tail
  const dev::compress_policies<scorers::observation_window> policies{{.pool_radius = 0}};
  std::size_t bytes = 0;
  REQUIRE(dev::compress(nullptr, bytes, batch, policies).ok());
  device_buffer temp(mr, bytes);
  REQUIRE(dev::compress(temp.data, bytes, batch, policies).ok());
  REQUIRE(dev::read_status(temp.data).ok());
  CHECK(head_out == std::vector<index_t>{5, 2});

  // The masses, read back from the workspace (the carve compress made).
  dev::plan_totals p;
  REQUIRE(dev::plan(batch, p, dev::needs_of<scorers::observation_window>).ok());
  workspace_carver carver(dev::workspace_base(temp.data));
  const auto ws = dev::carve<T, Layout>(carver, p, dev::needs_of<scorers::observation_window>);
  REQUIRE(p.tokens == 10);
  std::vector<float> mass(10);
  KVCAP_TEST_CUDA(cudaMemcpy(mass.data(), ws.window_mass, mass.size() * sizeof(float), cudaMemcpyDeviceToHost));
  const std::vector<float> want{0.f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0.75f, 0.f, 0.f, 0.25f};
  for (std::size_t t = 0; t < want.size(); ++t) {
    INFO("slot ", t);
    CHECK(mass[t] == doctest::Approx(want[t]).epsilon(1e-5));
  }

  // Kept: head 0 slots 1-5, head 1 tokens 0 and 5, in order.
  host_image<T, Layout> got;
  clone(img, got);
  image.download(got);
  const std::vector<std::vector<std::int64_t>> kept{{1, 2, 3, 4, 5}, {0, 5}};
  for (index_t head = 0; head < 2; ++head)
    for (std::size_t tok = 0; tok < kept[head].size(); ++tok)
      CHECK(got.view.meta_at(static_cast<index_t>(tok), head).index == kept[head][tok]);

  // A window longer than every head is no chunk's tail: refused, nothing moved.
  const std::vector<kv_tensor<const T>> too_long{{static_cast<const T*>(query_memory.data), 7, 2, 1}};
  const std::vector<index_t> short_lengths{5, 2}, smaller_budgets{4, 1};
  batch.head_lengths = short_lengths, batch.head_budgets = smaller_budgets, batch.windows = too_long;
  const dev::status s = dev::compress(temp.data, bytes, batch, policies);
  CHECK(s.code == dev::errc::shape_mismatch);
  CHECK(std::string(s.argument) == "windows[].num_tokens (<= resident tokens: the chunk's tail)");
  CHECK(s.expected == 5);
  CHECK(s.received == 7);
}

namespace {

/// shared_heads_case's executor: the kernels, on copies of the host images in device memory.
struct device_executor {
  cudaStream_t stream;
  template <class T, class Layout, class Policies>
  std::vector<index_t> operator()(std::vector<host_image<T, Layout>>& images, dev::compress_batch<T, Layout> batch,
                                  const Policies& policies) const {
    dev::counting_resource mr;
    std::vector<std::unique_ptr<device_image<T, Layout>>> on_device;
    std::vector<layer_view<T, Layout>> views;
    for (const auto& img : images) {
      on_device.push_back(std::make_unique<device_image<T, Layout>>(mr, img));
      on_device.back()->view.length = img.view.length;
      views.push_back(on_device.back()->view);
    }
    batch.views = views;
    std::vector<std::unique_ptr<device_buffer>> window_memory;
    std::vector<kv_tensor<const T>> windows;  // the same queries, in device memory
    for (const auto& w : batch.windows) windows.push_back(window_on_device(mr, w, window_memory));
    batch.windows = windows;
    std::vector<index_t> out(views.size() * static_cast<std::size_t>(views[0].mapping.num_heads), -1);
    device_buffer out_memory(mr, out.size() * sizeof(index_t));
    KVCAP_TEST_CUDA(cudaMemcpy(out_memory.data, out.data(), out.size() * sizeof(index_t), cudaMemcpyHostToDevice));
    batch.head_lengths_device_out = static_cast<index_t*>(out_memory.data);
    std::size_t bytes = 0;
    REQUIRE(dev::compress(nullptr, bytes, batch, policies, stream).ok());
    device_buffer temp(mr, bytes);
    const dev::status s = dev::compress(temp.data, bytes, batch, policies, stream);
    INFO("status ", std::string(dev::to_string(s.code)), " ", std::string(s.argument ? s.argument : ""), " at ", s.at);
    REQUIRE(s.ok());
    REQUIRE(dev::read_status(temp.data, stream).ok());
    KVCAP_TEST_CUDA(cudaMemcpy(out.data(), out_memory.data, out.size() * sizeof(index_t), cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < images.size(); ++i) on_device[i]->download(images[i]);
    return out;
  }
};

/// Runs `cases(r, exec)` (returning shared_case_counts) with the kernels' executor on a stream
/// of its own, seeded by `seed`, and reports what they saw; the heads must have ended unequal.
template <class Cases>
void shared_cases_on_device(std::uint64_t seed, Cases cases) {
  rng r(seed);
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const shared_case_counts counts = cases(r, device_executor{stream});
  MESSAGE(describe(counts));
  CHECK(counts.unequal_heads > 0);
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

}  // namespace

TEST_CASE("heads that share a budget: hand-checked kept sets" * doctest::skip(no_gpu())) {
  cudaStream_t stream;
  KVCAP_TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  check_shared_hand_cases(device_executor{stream});  // the reference meets the same (test_device_shared_heads.cpp)
  KVCAP_TEST_CUDA(cudaStreamDestroy(stream));
}

TEST_CASE_TEMPLATE("heads that share a budget keep what the host's head-adaptive budget keeps" *
                       doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::paged_hnd, layouts::varlen) {
  // compress_batch::share_heads against host::compressor with budgets::head_adaptive: floors of
  // 0 to the whole budget, ties across heads (small integers, duplicate rows), protected
  // tokens, the merge; then segments of thousands of slots (the view's radix select over
  // wide keys, many tiles). shared_heads_case.hpp compares lengths, kept rows and storage.
  const std::uint64_t seed = 21 + (Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>;
  shared_cases_on_device(seed, [](rng& r, const device_executor& exec) {
    shared_case_counts counts;
    for (int c = 0; c < scaled(30); ++c) {
      counts += shared_heads_case<Layout, scorers::key_norm>(r, exec);
      counts += shared_heads_case<Layout, scorers::recency, reducers::evict, __half>(r, exec);
      counts += shared_heads_case<Layout, scorers::key_diff>(r, exec);
      counts += shared_heads_case<Layout, scorers::temporal_redundancy, reducers::evict, __half>(r, exec);
      counts += shared_heads_case<Layout, blend_norms>(r, exec);
      counts += shared_heads_case<Layout, scorers::key_norm, reducers::merge, __half>(r, exec);
    }
    for (int c = 0; c < scaled(3); ++c) {
      counts += shared_heads_case<Layout, scorers::key_diff>(r, exec, 2500, 800);
      counts += shared_heads_case<Layout, scorers::recency, reducers::evict, __half>(r, exec, 2500, 800);
    }
    return counts;
  });
}

TEST_CASE_TEMPLATE("heads that share a budget keep what the host keeps by window attention (to near-ties)" *
                       doctest::skip(no_gpu()),
                   Layout, layouts::nhd, layouts::paged_hnd, layouts::varlen) {
  // SnapKV's observation window over shared budgets (GQA 1-4, causal tails and proxies, float
  // and half): the window mass is the host's to rounding, so near-tied tokens may change sides,
  // also between heads; every other token, every kept row and each view's total must agree,
  // and a view without such a swap is compared exactly (shared_heads_case.hpp).
  const std::uint64_t seed = 31 + (Layout::kind == kv_layout::nhd) + 7 * std::is_same_v<Layout, layouts::varlen>;
  shared_cases_on_device(seed, [](rng& r, const device_executor& exec) {
    shared_case_counts counts;
    for (int c = 0; c < scaled(60); ++c) {
      counts += shared_heads_case<Layout, scorers::observation_window>(r, exec, 40, 30, 1e-4f);
      counts += shared_heads_case<Layout, scorers::observation_window, reducers::evict, __half>(r, exec, 40, 30, 1e-4f);
    }
    for (int c = 0; c < scaled(2); ++c)
      counts += shared_heads_case<Layout, scorers::observation_window>(r, exec, 1500, 600, 1e-4f);
    return counts;
  });
}
