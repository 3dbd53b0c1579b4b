// examples/device_loop.cu — kvcap's device compressor in a batched engine's prefill loop.
//
// Three requests with different prompt lengths and budgets share one paged KV pool (vLLM's
// layout: pages of 16 tokens × 8 kv-heads × 128 dims in half precision, one block table per
// request, pages handed out in shuffled order). Each prefill step brings a chunk of every
// unfinished request; in every layer the engine writes the chunks' K/V into their pages, runs
// its attention, then calls kvcap::device::compress once for the whole batch: SnapKV's
// observation window (each chunk's last 32 queries, 4 query heads per kv-head) decides what
// stays, and the merge reducer folds every dropped token into its most similar kept
// neighbour. The workspace is sized once, from declared limits, before the loop; nothing is
// allocated inside it. The run checks what the engine relies on afterwards and prints it.
//
// The K/V/Q values are random (the engine's projections are not the point here); the
// device's kept sets are checked against the host executor in tests/device. Without a GPU
// the program says so and exits 77 (ctest: Skipped).

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <kvcap/device.cuh>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace {

using namespace kvcap;
namespace dev = kvcap::device;
using T = __half;
using Layout = layouts::paged_nhd;

constexpr index_t layers = 2, kv_heads = 8, q_heads = 32, dim = 128, page_size = 16, max_chunk = 256, window = 32;
constexpr index_t num_requests = 3;
constexpr index_t request_prompt[num_requests] = {3000, 1500, 2200};
constexpr index_t request_budget[num_requests] = {1024, 512, 768};

#define CHECK_CUDA(call)                                                                             \
  do {                                                                                               \
    const cudaError_t e_ = (call);                                                                   \
    if (e_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));    \
      std::exit(1);                                                                                  \
    }                                                                                                \
  } while (0)

/// The engine's append into its paged cache (vLLM's reshape_and_cache): chunk token t of
/// every head goes to slot at + t. k, v: (n, kv_heads, dim); meta: (n).
__global__ void append_kernel(layer_view<T, Layout> view, const T* k, const T* v, const token_meta* meta, index_t at,
                              index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n * kv_heads * dim;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t tok = i / (kv_heads * dim), head = i / dim % kv_heads, d = i % dim;
    view.k[view.mapping(at + tok, head) + d] = k[i];
    view.v[view.mapping(at + tok, head) + d] = v[i];
    if (d == 0) view.meta_at(at + tok, head) = meta[tok];
  }
}

template <class U>
U* device_alloc(std::size_t n) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(U)));
  return static_cast<U*>(p);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::puts("device_loop: no usable GPU: skipped");
    return 77;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> gauss;

  // The engine's paged pool: each request owns ceil((budget + max_chunk) / page_size) pages,
  // handed out from a shuffled pool; metadata is one record per (head, slot).
  std::vector<index_t> pages_of(num_requests);
  for (index_t r = 0; r < num_requests; ++r) pages_of[r] = (request_budget[r] + max_chunk + page_size - 1) / page_size;
  const index_t pool_pages = std::accumulate(pages_of.begin(), pages_of.end(), index_t{0});
  std::vector<std::int32_t> pool(static_cast<std::size_t>(pool_pages));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  const std::size_t page_elems = static_cast<std::size_t>(page_size * kv_heads * dim);
  std::vector<layer_view<T, Layout>> views;  // (layer, request)
  std::vector<token_meta*> metas;
  for (index_t layer = 0; layer < layers; ++layer) {
    T* k_pool = device_alloc<T>(pool_pages * page_elems);
    T* v_pool = device_alloc<T>(pool_pages * page_elems);
    index_t first_page = 0;
    for (index_t r = 0; r < num_requests; ++r) {
      std::int32_t* table = device_alloc<std::int32_t>(pages_of[r]);
      CHECK_CUDA(cudaMemcpy(table, pool.data() + first_page, pages_of[r] * sizeof(std::int32_t), cudaMemcpyHostToDevice));
      first_page += pages_of[r];
      const index_t capacity = request_budget[r] + max_chunk;
      metas.push_back(device_alloc<token_meta>(capacity * kv_heads));
      views.push_back({k_pool, v_pool, metas.back(),
                       {.capacity = capacity, .num_heads = kv_heads, .head_dim = dim, .page_size = page_size,
                        .block_table = table, .num_pages = pool_pages},
                       0});
    }
  }

  // Policies and a workspace that serves every call within the declared limits.
  using scorer = scorers::observation_window;
  const dev::compress_policies<scorer, structures::sequence, reducers::merge> policies{{.pool_radius = 3}};
  const dev::workspace_limits limits{.max_views = num_requests, .num_kv_heads = kv_heads, .head_dim = dim,
                                     .max_capacity = *std::max_element(request_budget, request_budget + num_requests) + max_chunk,
                                     .max_window_rows = window * (q_heads / kv_heads)};
  std::size_t workspace_bytes = 0;
  if (const dev::status s = dev::workspace_bound<T, Layout, scorer, reducers::merge>(limits, workspace_bytes); !s)
    return std::fprintf(stderr, "workspace_bound: %s: %s\n", dev::to_string(s.code), s.argument), 1;
  void* workspace = device_alloc<std::byte>(workspace_bytes);
  // The first failure of the device-side checks (NaN/Inf, metadata) of any call: the engine
  // waits once, after the prefill, instead of after every call (failure_log.cuh).
  auto* failure_log = device_alloc<dev::device_report>(1);
  CHECK_CUDA(cudaMemset(failure_log, 0, sizeof(dev::device_report)));

  // Chunk buffers (the engine's projections would fill them), in device memory.
  T* k_chunk = device_alloc<T>(num_requests * max_chunk * kv_heads * dim);
  T* v_chunk = device_alloc<T>(num_requests * max_chunk * kv_heads * dim);
  T* q_chunk = device_alloc<T>(num_requests * max_chunk * q_heads * dim);
  token_meta* meta_chunk = device_alloc<token_meta>(num_requests * max_chunk);
  std::vector<T> host_values(static_cast<std::size_t>(num_requests * max_chunk * q_heads * dim));
  std::vector<token_meta> host_meta(static_cast<std::size_t>(num_requests * max_chunk));
  const auto fill = [&](T* device, index_t n) {
    for (index_t i = 0; i < n; ++i) host_values[i] = __float2half(gauss(rng));
    CHECK_CUDA(cudaMemcpy(device, host_values.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  };

  std::vector<index_t> done(num_requests, 0), resident(num_requests * layers, 0), lengths_out(num_requests);
  std::vector<index_t> budgets(request_budget, request_budget + num_requests);
  std::vector<kv_tensor<const T>> windows(num_requests);
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  index_t steps = 0, calls = 0;
  while (true) {
    index_t chunk[num_requests], any = 0;
    for (index_t r = 0; r < num_requests; ++r) any += chunk[r] = std::min(max_chunk, request_prompt[r] - done[r]);
    if (any == 0) break;
    for (index_t r = 0; r < num_requests; ++r)
      for (index_t t = 0; t < chunk[r]; ++t) host_meta[r * max_chunk + t] = token_meta{.index = done[r] + t};
    CHECK_CUDA(cudaMemcpy(meta_chunk, host_meta.data(), host_meta.size() * sizeof(token_meta), cudaMemcpyHostToDevice));
    for (index_t layer = 0; layer < layers; ++layer) {
      fill(k_chunk, num_requests * max_chunk * kv_heads * dim);
      fill(v_chunk, num_requests * max_chunk * kv_heads * dim);
      fill(q_chunk, num_requests * max_chunk * q_heads * dim);
      // example-begin device-loop
      // One layer of one prefill step, for the whole batch.
      const std::span<layer_view<T, Layout>> batch_views(views.data() + layer * num_requests, num_requests);
      for (index_t r = 0; r < num_requests; ++r) {
        layer_view<T, Layout>& view = batch_views[r];
        const index_t n = chunk[r], offset = r * max_chunk * kv_heads * dim;
        if (n > 0)  // the engine appends the chunk to its pages: resident ≤ budget + chunk
          append_kernel<<<64, 256, 0, stream>>>(view, k_chunk + offset, v_chunk + offset, meta_chunk + r * max_chunk,
                                                view.length, n);
        view.length += n;
        // ... the engine's attention of the chunk's queries over view runs here ...
        const index_t w = std::min(window, n);  // observation window: the chunk's last w queries
        windows[r] = w > 0 ? kv_tensor<const T>{q_chunk + (r * max_chunk + n - w) * q_heads * dim, w, q_heads, dim}
                           : kv_tensor<const T>{};
      }
      dev::compress_batch<T, Layout> batch{batch_views, budgets};
      batch.windows = windows;  // causal: each window is its chunk's tail
      batch.appended = std::span<const index_t>(chunk, num_requests);  // NaN/Inf checks: the new tokens only
      batch.lengths_out = lengths_out;
      batch.failure_log = failure_log;
      const dev::status s = dev::compress(workspace, workspace_bytes, batch, policies, stream);  // back to ≤ budget
      if (!s) return std::fprintf(stderr, "compress: %s: %s\n", dev::to_string(s.code), s.argument), 1;
      for (index_t r = 0; r < num_requests; ++r) batch_views[r].length = lengths_out[r];
      // example-end device-loop
      ++calls;
    }
    for (index_t r = 0; r < num_requests; ++r) done[r] += chunk[r];
    ++steps;
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  const dev::status device_checks = dev::read_failure_log(failure_log, stream);  // every call's
  if (!device_checks)
    return std::fprintf(stderr, "device checks: %s: %s\n", dev::to_string(device_checks.code), device_checks.argument), 1;

  // What the engine relies on: every head at its budget, tokens in ascending logical order,
  // and (merge) every prompt token accounted for in the kept slots' sizes.
  std::printf("kvcap device_loop: %lld prefill steps, %lld compress calls (one per layer and step)\n",
              static_cast<long long>(steps), static_cast<long long>(calls));
  std::printf("scorer observation_window (window %lld, GQA %lld), reducer merge, layout paged_nhd (page %lld), half\n",
              static_cast<long long>(window), static_cast<long long>(q_heads / kv_heads),
              static_cast<long long>(page_size));
  bool ok = true;
  for (index_t layer = 0; layer < layers; ++layer)
    for (index_t r = 0; r < num_requests; ++r) {
      const layer_view<T, Layout>& view = views[layer * num_requests + r];
      std::vector<token_meta> meta(static_cast<std::size_t>(view.capacity() * kv_heads));
      CHECK_CUDA(cudaMemcpy(meta.data(), metas[layer * num_requests + r], meta.size() * sizeof(token_meta),
                            cudaMemcpyDeviceToHost));
      index_t merged = 0, total_size = 0;
      bool ascending = true;
      for (index_t head = 0; head < kv_heads; ++head)
        for (index_t tok = 0; tok < view.length; ++tok) {
          const token_meta& m = meta[head * view.capacity() + tok];
          total_size += m.size, merged += m.size > 1;
          if (tok > 0 && m.index <= meta[head * view.capacity() + tok - 1].index) ascending = false;
        }
      const bool good = view.length == std::min(request_prompt[r], request_budget[r]) && ascending && total_size == request_prompt[r] * kv_heads;
      ok = ok && good;
      std::printf("layer %lld request %lld: prompt %5lld tokens, budget %4lld, resident %4lld per head, %5lld slots hold "
                  "merged tokens, sizes sum to %lld per head (%s), pages %lld instead of %lld\n",
                  static_cast<long long>(layer), static_cast<long long>(r), static_cast<long long>(request_prompt[r]),
                  static_cast<long long>(request_budget[r]), static_cast<long long>(view.length),
                  static_cast<long long>(merged), static_cast<long long>(total_size / kv_heads),
                  good ? "ok" : "WRONG", static_cast<long long>(pages_of[r]),
                  static_cast<long long>((request_prompt[r] + page_size - 1) / page_size));
    }
  std::printf("workspace %zu bytes, allocated once\n", workspace_bytes);
  return ok ? 0 : 1;
}
