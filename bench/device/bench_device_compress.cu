// bench/device/bench_device_compress.cu — the device executor's speed, measured against
// yardsticks in the same run:
//
//   compact_nhd, compact_hnd  the in-place compaction alone (K, V, metadata of the kept rows that
//                             move) against cudaMemcpyAsync device-to-device of the same bytes;
//                             target: compaction ≥ 80% of memcpy throughput. Also against a 2D
//                             memcpy of as many K and V rows laid out as the layout lays out one
//                             head's rows (NHD: 256-byte rows 2 KiB apart; HND: back to back), the
//                             bandwidth that call allows for narrow rows; and against the
//                             compaction's own moves copied by a plain kernel, out of place
//                             (rows_copy_*: what the access pattern allows) and in place in
//                             no order (rows_in_place_*: the same addresses without the
//                             compaction's schedule; timing only). Swept: the tile size and
//                             the copy batch (loads a thread has in flight).
//   compress_vs_attention     score, select (, merge) and compact of one prefill chunk for a batch
//                             against a plain tiled attention of that chunk over that cache (the
//                             work an engine does per chunk anyway); target: select + compact
//                             ≤ 10% of it. Scorers: key norm, KeyDiff, recency, SnapKV's window
//                             (the chunk's last 32 queries × 4 GQA heads per kv-head, pooled ±3),
//                             key norm with the merge reducer, and key norm with the heads of
//                             each request sharing its budget (floor 0.2; their competition
//                             timed with the selection) (each stage timed apart);
//                             then, on 28×28-token frames, the structure-aware ones: temporal
//                             and spatial redundancy, blend<KeyDiff, temporal>, KeyDiff + merge.
//   merge_rounds_vs_walk      the merge in rounds (a block per segment) against its slot-order
//                             walk (a warp per segment), and the rounds' walk threshold swept,
//                             on one selection; every variant must leave the same caches.
//
// Shape (the paper's Qwen2.5-VL-7B-like setting): batch 8 requests, 8 kv heads × 128 dims,
// 32 query heads (GQA 4), half precision, budget 4096, chunk 784 (a 28×28 tile), so every
// (request, head) segment holds 4880 tokens and keeps 4096. Drop patterns: "oldest"
// (recency: every kept row moves, the worst case for compaction), "spread" (key norm of random
// keys: drops all over). The attention yardstick is deliberately simple (CUDA cores, fp32
// accumulation, no tensor cores): its TFLOP/s is reported, and so is the fraction against an
// attention at 400 TFLOP/s (what FlashAttention reaches on an H100), so the ratio can be read
// against a real engine. Without a GPU the program says so and exits 0.

#include <benchmark/benchmark.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <kvcap/device.cuh>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace kvcap;
namespace dev = kvcap::device;
using T = __half;

constexpr index_t batch = 8, kv_heads = 8, q_heads = 32, dim = 128, budget = 4096, chunk = 784;
constexpr index_t capacity = budget + chunk;
constexpr index_t window_queries = 32;  // SnapKV's observation window: the chunk's last 32 queries

#define BENCH_CUDA(call)                                                                        \
  do {                                                                                          \
    const cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

// ---- the yardstick: a plain tiled attention (flash-style online softmax) -----------------
// One block = 64 queries of one query head of one request; 8 warps of 8 queries each. Key
// tiles of 32 rows (fp32, padded) and value tiles (half) are staged in shared memory; lane i
// scores key i of the tile for each of its warp's queries, then holds 4 output dims of each.
// Causal: chunk query i sits at slot length − chunk + i.
constexpr int att_queries = 64, att_keys = 32, att_threads = 256;

__global__ void __launch_bounds__(att_threads)
    attention_kernel(const T* const* k_cache, const T* const* v_cache, const T* q, float* out, index_t length,
                     index_t num_queries) {
  __shared__ float ks[att_keys][dim + 1];
  __shared__ __half vs[att_keys][dim];
  __shared__ __half qs[att_queries][dim];
  const index_t req = blockIdx.z, qh = blockIdx.y, kvh = qh / (q_heads / kv_heads);
  const index_t q0 = blockIdx.x * att_queries;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float scale = 1.f / sqrtf(static_cast<float>(dim));
  for (int i = threadIdx.x; i < att_queries * dim; i += att_threads) {
    const index_t qi = q0 + i / dim;
    qs[i / dim][i % dim] = qi < num_queries ? q[((req * num_queries + qi) * q_heads + qh) * dim + i % dim] : __float2half(0.f);
  }
  float acc[8][4] = {}, m[8], l[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) m[j] = -INFINITY, l[j] = 0.f;
  const index_t block_end = length - num_queries + q0 + att_queries;  // keys the block's last query sees
  for (index_t k0 = 0; k0 < block_end && k0 < length; k0 += att_keys) {
    __syncthreads();
    for (int i = threadIdx.x; i < att_keys * dim; i += att_threads) {
      const index_t tok = k0 + i / dim;
      const bool in = tok < length;
      const index_t at = (tok * kv_heads + kvh) * dim + i % dim;  // NHD
      ks[i / dim][i % dim] = in ? __half2float(k_cache[req][at]) : 0.f;
      vs[i / dim][i % dim] = in ? v_cache[req][at] : __float2half(0.f);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int qr = warp * 8 + j;
      const index_t qi = q0 + qr, visible = length - num_queries + qi + 1;
      float dot = 0.f;
      for (int d = 0; d < dim; ++d) dot = __fmaf_rn(__half2float(qs[qr][d]), ks[lane][d], dot);
      const float s = k0 + lane < visible && qi < num_queries ? dot * scale : -INFINITY;
      float tile_max = s;
      for (int o = 16; o > 0; o /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
      const float new_m = fmaxf(m[j], tile_max);
      if (new_m == -INFINITY) continue;
      const float correction = __expf(m[j] - new_m), p = __expf(s - new_m);
      float psum = p;
      for (int o = 16; o > 0; o /= 2) psum += __shfl_xor_sync(0xffffffffu, psum, o);
      l[j] = l[j] * correction + psum;
      m[j] = new_m;
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[j][c] *= correction;
      for (int key = 0; key < att_keys; ++key) {
        const float pk = __shfl_sync(0xffffffffu, p, key);
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[j][c] = __fmaf_rn(pk, __half2float(vs[key][lane + 32 * c]), acc[j][c]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const index_t qi = q0 + warp * 8 + j;
    if (qi >= num_queries) continue;
#pragma unroll
    for (int c = 0; c < 4; ++c)
      out[((req * num_queries + qi) * q_heads + qh) * dim + lane + 32 * c] = l[j] > 0.f ? acc[j][c] / l[j] : 0.f;
  }
}

/// One kept row that a compaction moves: its segment (request · kv_heads + head), its source
/// slot and its destination slot, in 32 bits (the row-copy yardstick reads 4 bytes a row).
struct row_move {
  static constexpr int slot_bits = 13;
  static_assert(capacity <= (index_t{1} << slot_bits) && batch * kv_heads <= (index_t{1} << (32 - 2 * slot_bits)));
  std::uint32_t packed;
  static row_move of(index_t segment, index_t from, index_t to) {
    return {static_cast<std::uint32_t>((segment << 2 * slot_bits) | (from << slot_bits) | to)};
  }
  __host__ __device__ index_t segment() const { return static_cast<index_t>(packed >> 2 * slot_bits); }
  __host__ __device__ index_t from() const { return static_cast<index_t>((packed >> slot_bits) & ((1u << slot_bits) - 1)); }
  __host__ __device__ index_t to() const { return static_cast<index_t>(packed & ((1u << slot_bits) - 1)); }
};

// ---- the batch: 8 caches in device memory, their pristine copies, a chunk of queries ------
template <class Layout>
struct fixture {
  std::vector<T*> k, v;
  std::vector<token_meta*> meta;
  T *k_pristine = nullptr, *v_pristine = nullptr;
  token_meta* meta_pristine = nullptr;
  T* q = nullptr;
  float* out = nullptr;
  T** k_table = nullptr;
  T** v_table = nullptr;
  std::vector<layer_view<T, Layout>> views;
  std::vector<index_t> budgets;
  std::vector<index_t> appended;  ///< each request's chunk: the tokens whose K and V a call checks
  std::vector<kv_tensor<const T>> windows;  // each request's last window_queries chunk queries
  dev::device_report* failure_log = nullptr;  ///< an engine's log of the first failed check
  static constexpr std::size_t elems = static_cast<std::size_t>(capacity * kv_heads * dim);
  static constexpr std::size_t metas = static_cast<std::size_t>(capacity * kv_heads);

  fixture() {
    std::mt19937 gen(42);
    std::normal_distribution<float> normal;
    std::vector<T> host(elems);
    std::vector<token_meta> host_meta(metas);
    for (index_t head = 0; head < kv_heads; ++head)
      for (index_t tok = 0; tok < capacity; ++tok) {
        token_meta m{};
        m.index = tok;
        m.position = {static_cast<std::int32_t>(tok), static_cast<std::int32_t>(tok), static_cast<std::int32_t>(tok)};
        host_meta[head * capacity + tok] = m;
      }
    BENCH_CUDA(cudaMalloc(&k_pristine, elems * batch * sizeof(T)));
    BENCH_CUDA(cudaMalloc(&v_pristine, elems * batch * sizeof(T)));
    BENCH_CUDA(cudaMalloc(&meta_pristine, metas * batch * sizeof(token_meta)));
    for (index_t r = 0; r < batch; ++r) {
      for (auto& x : host) x = __float2half(normal(gen));
      BENCH_CUDA(cudaMemcpy(k_pristine + r * elems, host.data(), elems * sizeof(T), cudaMemcpyHostToDevice));
      for (auto& x : host) x = __float2half(normal(gen));
      BENCH_CUDA(cudaMemcpy(v_pristine + r * elems, host.data(), elems * sizeof(T), cudaMemcpyHostToDevice));
      BENCH_CUDA(cudaMemcpy(meta_pristine + r * metas, host_meta.data(), metas * sizeof(token_meta), cudaMemcpyHostToDevice));
      T *kr, *vr;
      token_meta* mr;
      BENCH_CUDA(cudaMalloc(&kr, elems * sizeof(T)));
      BENCH_CUDA(cudaMalloc(&vr, elems * sizeof(T)));
      BENCH_CUDA(cudaMalloc(&mr, metas * sizeof(token_meta)));
      k.push_back(kr), v.push_back(vr), meta.push_back(mr);
      views.push_back({kr, vr, mr, make_mapping<Layout>(capacity, kv_heads, dim), capacity});
      budgets.push_back(budget);
      appended.push_back(chunk);
    }
    const std::size_t q_elems = static_cast<std::size_t>(batch * chunk * q_heads * dim);
    std::vector<T> host_q(q_elems);
    for (auto& x : host_q) x = __float2half(normal(gen));
    BENCH_CUDA(cudaMalloc(&q, q_elems * sizeof(T)));
    BENCH_CUDA(cudaMemcpy(q, host_q.data(), q_elems * sizeof(T), cudaMemcpyHostToDevice));
    for (index_t r = 0; r < batch; ++r)
      windows.push_back({q + (r * chunk + chunk - window_queries) * q_heads * dim, window_queries, q_heads, dim});
    BENCH_CUDA(cudaMalloc(&out, q_elems * sizeof(float)));
    BENCH_CUDA(cudaMalloc(&failure_log, sizeof(dev::device_report)));
    BENCH_CUDA(cudaMemset(failure_log, 0, sizeof(dev::device_report)));
    BENCH_CUDA(cudaMalloc(&k_table, batch * sizeof(T*)));
    BENCH_CUDA(cudaMalloc(&v_table, batch * sizeof(T*)));
    BENCH_CUDA(cudaMemcpy(k_table, k.data(), batch * sizeof(T*), cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(v_table, v.data(), batch * sizeof(T*), cudaMemcpyHostToDevice));
    restore(0);
    BENCH_CUDA(cudaDeviceSynchronize());
  }
  void restore(cudaStream_t stream) {
    for (index_t r = 0; r < batch; ++r) {
      BENCH_CUDA(cudaMemcpyAsync(k[r], k_pristine + r * elems, elems * sizeof(T), cudaMemcpyDeviceToDevice, stream));
      BENCH_CUDA(cudaMemcpyAsync(v[r], v_pristine + r * elems, elems * sizeof(T), cudaMemcpyDeviceToDevice, stream));
      BENCH_CUDA(cudaMemcpyAsync(meta[r], meta_pristine + r * metas, metas * sizeof(token_meta), cudaMemcpyDeviceToDevice,
                                 stream));
    }
  }
  dev::compress_batch<T, Layout> batch_view() const {
    dev::compress_batch<T, Layout> b{views, budgets};
    b.windows = windows;  // read by window scorers only
    b.appended = appended;  // as an engine calls it: the chunk's K and V are checked for NaN and Inf
    b.failure_log = failure_log;  // and the first failure kept for one read after the prefill
    return b;
  }
  /// The kept rows that moved, read back from the metadata after a compaction: a row whose
  /// slot's logical index changed came from the slot of that index (the pristine cache holds
  /// logical index `tok` at slot `tok`). In (request, head, destination) order.
  std::vector<row_move> moves() const {
    std::vector<row_move> out;
    std::vector<token_meta> host_meta(metas);
    for (index_t r = 0; r < batch; ++r) {
      BENCH_CUDA(cudaMemcpy(host_meta.data(), meta[r], metas * sizeof(token_meta), cudaMemcpyDeviceToHost));
      for (index_t head = 0; head < kv_heads; ++head)
        for (index_t tok = 0; tok < budget; ++tok)
          if (const index_t from = host_meta[head * capacity + tok].index; from != tok)
            out.push_back(row_move::of(r * kv_heads + head, from, tok));
    }
    return out;
  }
  index_t moved_rows() const { return static_cast<index_t>(moves().size()); }
  float attention_ms(cudaStream_t stream, cudaEvent_t start, cudaEvent_t stop) const {
    const dim3 grid(static_cast<unsigned>((chunk + att_queries - 1) / att_queries), q_heads, batch);
    BENCH_CUDA(cudaEventRecord(start, stream));
    attention_kernel<<<grid, att_threads, 0, stream>>>(k_table, v_table, q, out, capacity, chunk);
    BENCH_CUDA(cudaEventRecord(stop, stream));
    BENCH_CUDA(cudaEventSynchronize(stop));
    BENCH_CUDA(cudaGetLastError());
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
    return ms;
  }
  static double attention_flops() {
    double visible = 0;  // keys each chunk query sees (causal)
    for (index_t i = 0; i < chunk; ++i) visible += static_cast<double>(capacity - chunk + i + 1);
    return 4.0 * dim * visible * q_heads * batch;  // QK and PV, 2 flops a multiply-add
  }
};

template <class Layout>
fixture<Layout>& the_fixture() {
  static fixture<Layout> f;
  return f;
}

template <class Scorer, class Layout, class Reducer = reducers::evict>
struct prepared {
  dev::plan_totals p;
  void* temp = nullptr;
  dev::workspace_layout<T, Layout> ws;
  /// `tile_tokens` > 0: compaction tiles of that many slots instead of the planned size (an
  /// experiment: every segment of the fixture has the same length).
  explicit prepared(const dev::compress_batch<T, Layout>& b, index_t tile_tokens = 0) {
    if (!dev::plan(b, p, dev::needs_of<Scorer, Reducer>)) std::abort();
    if (tile_tokens > 0) {
      p.tile_tokens = tile_tokens;
      p.tiles = p.active_segments * ((p.max_length + tile_tokens - 1) / tile_tokens);
    }
    std::size_t bytes = 0;
    if (!dev::workspace_bytes<T, Layout>(p, dev::needs_of<Scorer, Reducer>, bytes)) std::abort();
    BENCH_CUDA(cudaMalloc(&temp, bytes));
    workspace_carver w(temp);
    ws = dev::carve<T, Layout>(w, p, dev::needs_of<Scorer, Reducer>);
  }
  ~prepared() { cudaFree(temp); }
};

struct events {
  cudaEvent_t e[9];
  events() {
    for (auto& x : e) BENCH_CUDA(cudaEventCreate(&x));
  }
  ~events() {
    for (auto& x : e) cudaEventDestroy(x);
  }
  float ms(int a, int b) const {
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, e[a], e[b]));
    return t;
  }
};

// ---- where a compaction tile's time goes: a probe that records each tile's phases --------
// Thread 0 of a tile's block stamps each compact_phase with %globaltimer (ns, comparable
// across SMs: the timeline) and clock64 (cycles of its SM: the phase durations), and the SM.
constexpr int stamp_words = 2 * dev::detail::compact_phases + 1;

struct timeline_probe {
  unsigned long long* stamps;  // (tile, word): globaltimer per phase, clock64 per phase, SM
  unsigned long long entered_ns = 0, entered_cycles = 0;  // this thread's copy: no tile yet at `entered`
  __device__ void operator()(index_t tile, dev::detail::compact_phase phase) {
    unsigned long long ns;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
    const auto cycles = static_cast<unsigned long long>(clock64());
    if (phase == dev::detail::compact_phase::entered) {
      entered_ns = ns, entered_cycles = cycles;
      return;
    }
    const auto i = static_cast<int>(phase);
    unsigned long long* row = stamps + tile * stamp_words;
    row[i] = ns;
    row[dev::detail::compact_phases + i] = cycles;
    if (phase == dev::detail::compact_phase::taken) {
      row[0] = entered_ns, row[dev::detail::compact_phases] = entered_cycles;
      unsigned int sm;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      row[stamp_words - 1] = sm;
    }
  }
};

/// Mean phase durations of one probed compaction, its span, when the last block started, and
/// how many tiles an SM held at once on average, as benchmark counters (prefix tl_). Cycles
/// become microseconds at the clock the stamps themselves show (cycles over nanoseconds).
void report_timeline(benchmark::State& state, const std::vector<unsigned long long>& stamps, index_t tiles, int sms) {
  constexpr int phases = dev::detail::compact_phases;
  double phase_cycles[phases - 1] = {}, life_cycles = 0, life_ns = 0;
  unsigned long long first = ~0ull, last = 0, last_entered = 0;
  std::vector<int> per_sm(static_cast<std::size_t>(sms));
  for (index_t g = 0; g < tiles; ++g) {
    const unsigned long long* row = stamps.data() + g * stamp_words;
    if (row[stamp_words - 1] < per_sm.size()) ++per_sm[row[stamp_words - 1]];
    for (int i = 0; i + 1 < phases; ++i) phase_cycles[i] += static_cast<double>(row[phases + i + 1] - row[phases + i]);
    life_cycles += static_cast<double>(row[2 * phases - 1] - row[phases]);
    life_ns += static_cast<double>(row[phases - 1] - row[0]);
    first = std::min(first, row[0]), last = std::max(last, row[phases - 1]), last_entered = std::max(last_entered, row[0]);
  }
  const double n = static_cast<double>(tiles), span_us = static_cast<double>(last - first) / 1e3;
  const double cycles_per_us = life_cycles / life_ns * 1e3;
  double phase_us[phases - 1], life_us = life_cycles / cycles_per_us;
  for (int i = 0; i + 1 < phases; ++i) phase_us[i] = phase_cycles[i] / cycles_per_us;
  state.counters["tl_MHz"] = cycles_per_us;
  state.counters["tl_take_us"] = phase_us[0] / n;    // entered -> taken: the report and the tile counter
  state.counters["tl_plan_us"] = phase_us[1] / n;    // taken -> planned: the tile's records, keys, scans
  state.counters["tl_stage_us"] = phase_us[2] / n;   // planned -> staged: loads into shared memory, publish
  state.counters["tl_wait_us"] = phase_us[3] / n;    // staged -> released: the earlier tiles' flags
  state.counters["tl_write_us"] = phase_us[4] / n;   // released -> written: stores issued
  state.counters["tl_tile_us"] = life_us / n;
  state.counters["tl_span_us"] = span_us;             // first block entered -> last tile written
  state.counters["tl_last_entered_us"] = static_cast<double>(last_entered - first) / 1e3;
  state.counters["tl_tiles_per_sm"] = life_us / span_us / sms;  // tiles resident per SM, on average
  state.counters["tl_busiest_sm_over_mean"] = *std::max_element(per_sm.begin(), per_sm.end()) * sms / n;
}

/// A plain grid-stride copy of 16-byte vectors: what a simple kernel gets of memcpy's bandwidth.
__global__ void __launch_bounds__(256) copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n; i += stride) dst[i] = src[i];
}

/// The compaction's moves without its in-place schedule: each moving row's K and V (and, with
/// `Meta`, its metadata record) copied from its slot in the cache to its destination slot in a
/// second cache of the same shape, a load and then its store with nothing between them, the
/// addresses from a table of row_move (4 bytes a row). A warp moves one row's K and V in
/// 16-byte vectors. Against memcpy of the same bytes, this is what the access pattern allows
/// (256-byte rows at the layout's pitch, 40-byte records), without the staging, the tile
/// flags and the plan that the in-place compaction adds.
template <bool Meta, class Layout>
__global__ void __launch_bounds__(256) rows_copy_kernel(const layer_view<T, Layout>* src, const layer_view<T, Layout>* dst,
                                                     const row_move* moves, std::size_t rows) {
  constexpr std::size_t row_vecs = dim * sizeof(T) / sizeof(uint4), meta_words = sizeof(token_meta) / sizeof(std::uint64_t);
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t first = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  for (std::size_t i = first; i < rows * 2 * row_vecs; i += stride) {
    const row_move m = moves[i / (2 * row_vecs)];
    const index_t r = m.segment() / kv_heads, head = m.segment() % kv_heads;
    const auto c = static_cast<int>(i % (2 * row_vecs));
    const bool value = c >= static_cast<int>(row_vecs);
    const auto* from = reinterpret_cast<const uint4*>((value ? src[r].v : src[r].k) + src[r].mapping(m.from(), head));
    auto* to = reinterpret_cast<uint4*>((value ? dst[r].v : dst[r].k) + dst[r].mapping(m.to(), head));
    __stcg(to + c % row_vecs, __ldcg(from + c % row_vecs));
  }
  if constexpr (Meta)
    for (std::size_t i = first; i < rows * meta_words; i += stride) {
      const row_move m = moves[i / meta_words];
      const index_t r = m.segment() / kv_heads, head = m.segment() % kv_heads;
      const auto* from = reinterpret_cast<const unsigned long long*>(&src[r].meta_at(m.from(), head));
      auto* to = reinterpret_cast<unsigned long long*>(&dst[r].meta_at(m.to(), head));
      __stcg(to + i % meta_words, __ldcg(from + i % meta_words));
    }
}

// rows_copy_kernel with the cache as both source and destination is the same moves in place,
// in no order: the compaction's reads and writes at the same addresses, without its
// schedule. A row may then be read after another has overwritten it, so what it leaves is not
// a compaction: the benchmark only times it, and restores the cache after.

/// A second cache of the fixture's shape (the row copy's destination), with its views on the device.
template <class Layout>
struct cache_copy {
  std::vector<T*> k, v;
  std::vector<token_meta*> meta;
  layer_view<T, Layout>* views = nullptr;
  cache_copy() {
    std::vector<layer_view<T, Layout>> host;
    for (index_t r = 0; r < batch; ++r) {
      T *kr, *vr;
      token_meta* mr;
      BENCH_CUDA(cudaMalloc(&kr, fixture<Layout>::elems * sizeof(T)));
      BENCH_CUDA(cudaMalloc(&vr, fixture<Layout>::elems * sizeof(T)));
      BENCH_CUDA(cudaMalloc(&mr, fixture<Layout>::metas * sizeof(token_meta)));
      k.push_back(kr), v.push_back(vr), meta.push_back(mr);
      host.push_back({kr, vr, mr, make_mapping<Layout>(capacity, kv_heads, dim), capacity});
    }
    BENCH_CUDA(cudaMalloc(&views, batch * sizeof(layer_view<T, Layout>)));
    BENCH_CUDA(cudaMemcpy(views, host.data(), batch * sizeof(layer_view<T, Layout>), cudaMemcpyHostToDevice));
  }
  ~cache_copy() {
    for (index_t r = 0; r < batch; ++r) cudaFree(k[r]), cudaFree(v[r]), cudaFree(meta[r]);
    cudaFree(views);
  }
  cache_copy(const cache_copy&) = delete;
  cache_copy& operator=(const cache_copy&) = delete;
};

/// Whether every move's destination row (K, V, metadata) in `copy` equals the same slot's row
/// in the fixture's cache.
template <class Layout>
bool same_moved_rows(const fixture<Layout>& f, const cache_copy<Layout>& copy, const std::vector<row_move>& moves) {
  const auto mapping = make_mapping<Layout>(capacity, kv_heads, dim);
  std::vector<T> a(fixture<Layout>::elems), b(a.size());
  std::vector<token_meta> am(fixture<Layout>::metas), bm(am.size());
  const auto fetch = [](auto& host, const auto* device) {
    BENCH_CUDA(cudaMemcpy(host.data(), device, host.size() * sizeof(host[0]), cudaMemcpyDeviceToHost));
  };
  for (index_t r = 0; r < batch; ++r) {
    fetch(am, f.meta[r]), fetch(bm, copy.meta[r]);
    for (const row_move m : moves)
      if (m.segment() / kv_heads == r && am[m.segment() % kv_heads * capacity + m.to()] != bm[m.segment() % kv_heads * capacity + m.to()])
        return false;
    for (int part = 0; part < 2; ++part) {  // K, then V
      fetch(a, part == 0 ? f.k[r] : f.v[r]), fetch(b, part == 0 ? copy.k[r] : copy.v[r]);
      for (const row_move m : moves) {
        const index_t at = mapping(m.to(), m.segment() % kv_heads);
        if (m.segment() / kv_heads == r && std::memcmp(a.data() + at, b.data() + at, dim * sizeof(T)) != 0) return false;
      }
    }
  }
  return true;
}

/// The compaction with `copy_batch` vectors of K and of V loaded by a thread before it stores
/// any (the library's is dev::detail::copy_batch, 4); the others are an experiment.
template <class Layout, class Probe = dev::detail::no_compact_probe>
dev::status enqueue_compact_with(int copy_batch, const dev::workspace_layout<T, Layout>& ws, const dev::plan_totals& p,
                                 const dev::compress_batch<T, Layout>& b, cudaStream_t stream, Probe probe = {}) {
  switch (copy_batch) {
    case 1: return dev::detail::enqueue_compact<1>(ws, p, b, stream, probe);
    case 2: return dev::detail::enqueue_compact<2>(ws, p, b, stream, probe);
    case 4: return dev::detail::enqueue_compact<4>(ws, p, b, stream, probe);
    case 8: return dev::detail::enqueue_compact<8>(ws, p, b, stream, probe);
  }
  std::fprintf(stderr, "copy batch %d is not compiled in (1, 2, 4, 8)\n", copy_batch);
  std::abort();
}

template <class Layout, class Scorer>
void compact_vs_memcpy(benchmark::State& state, Scorer scorer) {
  fixture<Layout>& f = the_fixture<Layout>();
  const auto b = f.batch_view();
  prepared<Scorer, Layout> run(b, state.range(0));
  const int copy_batch = static_cast<int>(state.range(1));
  state.counters["tile_tokens"] = static_cast<double>(run.p.tile_tokens);
  state.counters["copy_batch"] = copy_batch;
  const dev::compress_policies<Scorer> policies{scorer};
  cudaStream_t stream = 0;
  events ev;
  int device = 0, sms = 0;
  BENCH_CUDA(cudaGetDevice(&device));
  BENCH_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  f.restore(stream);
  if (!dev::detail::enqueue_upload(run.ws, run.p, b, stream) || !dev::detail::enqueue_scores(run.ws, run.p, policies, stream) ||
      !dev::detail::enqueue_select(run.ws, run.p, stream))
    std::abort();
  double compact_ms = 0;
  for (auto _ : state) {
    f.restore(stream);
    if (!dev::detail::enqueue_select(run.ws, run.p, stream)) std::abort();  // also resets the compaction's tile flags
    BENCH_CUDA(cudaEventRecord(ev.e[0], stream));
    if (!enqueue_compact_with(copy_batch, run.ws, run.p, b, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[1], stream));
    BENCH_CUDA(cudaEventSynchronize(ev.e[1]));
    const float ms = ev.ms(0, 1);
    compact_ms += ms;
    state.SetIterationTime(ms / 1e3);
  }
  compact_ms /= static_cast<double>(state.iterations());
  if (!dev::read_status(run.temp)) std::abort();
  const index_t moved = f.moved_rows();
  // One more compaction of the same selection, probed, for the timeline (not timed above).
  {
    unsigned long long* stamps = nullptr;
    const auto words = static_cast<std::size_t>(run.p.tiles) * stamp_words;
    BENCH_CUDA(cudaMalloc(&stamps, words * sizeof(unsigned long long)));
    f.restore(stream);
    if (!dev::detail::enqueue_select(run.ws, run.p, stream) ||
        !enqueue_compact_with(copy_batch, run.ws, run.p, b, stream, timeline_probe{stamps}))
      std::abort();
    std::vector<unsigned long long> host(words);
    BENCH_CUDA(cudaMemcpyAsync(host.data(), stamps, words * sizeof(unsigned long long), cudaMemcpyDeviceToHost, stream));
    BENCH_CUDA(cudaStreamSynchronize(stream));
    BENCH_CUDA(cudaFree(stamps));
    if (!dev::read_status(run.temp) || f.moved_rows() != moved) std::abort();  // the probe changed nothing
    report_timeline(state, host, run.p.tiles, sms);
  }
  const double bytes = static_cast<double>(moved) * (2 * dim * sizeof(T) + sizeof(token_meta));
  // The same bytes, copied device to device, in the same run.
  void *src, *dst;
  BENCH_CUDA(cudaMalloc(&src, static_cast<std::size_t>(bytes)));
  BENCH_CUDA(cudaMalloc(&dst, static_cast<std::size_t>(bytes)));
  // Each yardstick: the mean of 20 timed runs after a warm-up.
  const auto mean_ms = [&](auto&& enqueue) {
    constexpr int reps = 20;
    double total = 0;
    for (int i = 0; i <= reps; ++i) {
      BENCH_CUDA(cudaEventRecord(ev.e[0], stream));
      enqueue();
      BENCH_CUDA(cudaEventRecord(ev.e[1], stream));
      BENCH_CUDA(cudaEventSynchronize(ev.e[1]));
      BENCH_CUDA(cudaGetLastError());
      if (i > 0) total += ev.ms(0, 1);  // the first is a warm-up
    }
    return total / reps;
  };
  const auto grid = static_cast<unsigned>(8 * sms);  // the plain kernels' grid: 8 blocks of 256 an SM
  const double memcpy_ms = mean_ms(
      [&] { BENCH_CUDA(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, stream)); });
  // And a plain copy kernel of the same bytes (16-byte vectors).
  const auto vectors = static_cast<std::size_t>(bytes) / sizeof(uint4);
  const double copy_ms = mean_ms([&] {
    copy_kernel<<<grid, 256, 0, stream>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), vectors);
  });
  state.counters["copy_kernel_over_memcpy"] = memcpy_ms / copy_ms;
  BENCH_CUDA(cudaFree(src));
  BENCH_CUDA(cudaFree(dst));
  // And the compaction's own moves by a plain kernel (rows_copy_kernel): out of place, the
  // access pattern's bandwidth, with and without the metadata; in place and in no order, the
  // same addresses without the compaction's schedule. Checked first: the pristine cache's
  // rows, copied out of place by the table, equal the rows a compaction then leaves.
  {
    const std::vector<row_move> moves = f.moves();  // of the probed compaction above
    if (static_cast<index_t>(moves.size()) != moved) std::abort();
    row_move* table = nullptr;
    BENCH_CUDA(cudaMalloc(&table, moves.size() * sizeof(row_move)));
    BENCH_CUDA(cudaMemcpy(table, moves.data(), moves.size() * sizeof(row_move), cudaMemcpyHostToDevice));
    cache_copy<Layout> copy;
    // Into `to`: copy.views (out of place) or the cache's own views (in place, in no order).
    const auto rows_copy = [&](bool meta, const layer_view<T, Layout>* to) {
      if (meta) rows_copy_kernel<true><<<grid, 256, 0, stream>>>(run.ws.views, to, table, moves.size());
      else rows_copy_kernel<false><<<grid, 256, 0, stream>>>(run.ws.views, to, table, moves.size());
    };
    f.restore(stream);
    rows_copy(true, copy.views);
    if (!dev::detail::enqueue_select(run.ws, run.p, stream) || !dev::detail::enqueue_compact(run.ws, run.p, b, stream))
      std::abort();
    BENCH_CUDA(cudaStreamSynchronize(stream));
    BENCH_CUDA(cudaGetLastError());
    // A yardstick that copies other rows than the compaction's is reported as failed and not
    // timed; the compaction's own figures above stand (this run may be the only one).
    const bool same = same_moved_rows(f, copy, moves);
    state.counters["rows_copy_checked"] = same ? 1 : 0;
    if (!same) std::fprintf(stderr, "rows_copy_kernel: a moved row differs from the compaction's; not timed\n");
    if (same) {
      const double kv_ms = mean_ms([&] { rows_copy(false, copy.views); });
      const double rows_ms = mean_ms([&] { rows_copy(true, copy.views); });
      const double in_place_ms = mean_ms([&] { rows_copy(true, run.ws.views); });
      f.restore(stream);  // the in-place moves left no compaction
      const double kv_bytes = static_cast<double>(moved) * (2 * dim * sizeof(T));
      state.counters["rows_copy_over_memcpy"] = memcpy_ms / rows_ms;
      state.counters["rows_copy_kv_over_memcpy"] = (kv_bytes / kv_ms) / (bytes / memcpy_ms);
      state.counters["rows_in_place_over_memcpy"] = memcpy_ms / in_place_ms;
      state.counters["compact_over_rows_copy"] = rows_ms / compact_ms;
    }
    BENCH_CUDA(cudaFree(table));
  }
  // And K and V of as many rows, laid out as the layout lays out one head's rows (NHD: a row
  // every kv_heads rows; HND: back to back), copied as a 2D memcpy. Runs 5 and 6 found it as
  // fast in HND, where the rows are contiguous, as in NHD: it measures that call on narrow
  // rows, and the row copy above is the yardstick of the access pattern.
  const std::size_t row_bytes = dim * sizeof(T);
  const std::size_t pitch = std::is_same_v<Layout, layouts::nhd> ? kv_heads * row_bytes : row_bytes;
  const auto rows = static_cast<std::size_t>(2 * moved);
  BENCH_CUDA(cudaMalloc(&src, rows * pitch));
  BENCH_CUDA(cudaMalloc(&dst, rows * pitch));
  const double strided_ms = mean_ms(
      [&] { BENCH_CUDA(cudaMemcpy2DAsync(dst, pitch, src, pitch, row_bytes, rows, cudaMemcpyDeviceToDevice, stream)); });
  BENCH_CUDA(cudaFree(src));
  BENCH_CUDA(cudaFree(dst));
  const double strided_bytes = static_cast<double>(rows * row_bytes);
  state.counters["strided_memcpy_GBps"] = strided_bytes / (strided_ms * 1e6);
  state.counters["compact_over_strided_memcpy"] = (bytes / (compact_ms * 1e6)) / (strided_bytes / (strided_ms * 1e6));
  state.counters["moved_rows"] = static_cast<double>(moved);
  state.counters["moved_MB"] = bytes / 1e6;
  state.counters["compact_GBps"] = bytes / (compact_ms * 1e6);  // bytes moved (each read once, written once)
  state.counters["memcpy_GBps"] = bytes / (memcpy_ms * 1e6);
  state.counters["compact_over_memcpy"] = memcpy_ms / compact_ms;  // throughput fraction; target >= 0.80
}

template <class Scorer>
void compact_nhd(benchmark::State& state, Scorer scorer) {
  compact_vs_memcpy<layouts::nhd>(state, scorer);
}
template <class Scorer>
void compact_hnd(benchmark::State& state, Scorer scorer) {
  compact_vs_memcpy<layouts::hnd>(state, scorer);
}

/// `share` ≥ 0: the heads of each request share its budget (compress_batch::share_heads, with
/// that floor fraction); the heads' competition is timed with the selection (select_us, as
/// the targets count it) and on its own (share_us).
template <class Scorer, class Reducer = reducers::evict, class Structure = structures::sequence>
void compress_vs_attention(benchmark::State& state, Scorer scorer, Reducer reducer = {}, Structure structure = {},
                           double share = -1) {
  using Layout = layouts::nhd;  // the attention yardstick reads NHD
  fixture<Layout>& f = the_fixture<Layout>();
  auto b = f.batch_view();
  index_t* head_lengths_out = nullptr;
  if (share >= 0) {
    BENCH_CUDA(cudaMalloc(&head_lengths_out, b.views.size() * kv_heads * sizeof(index_t)));
    b.share_heads = dev::head_sharing{share};
    b.head_lengths_device_out = head_lengths_out;
  }
  prepared<Scorer, Layout, Reducer> run(b);
  const dev::compress_policies<Scorer, Structure, Reducer> policies{scorer, structure, reducer};
  cudaStream_t stream = 0;
  events ev;
  double check_ms = 0, score_ms = 0, select_ms = 0, share_ms = 0, reduce_ms = 0, compact_ms = 0, log_ms = 0,
         total_ms = 0;
  for (auto _ : state) {
    f.restore(stream);
    BENCH_CUDA(cudaEventRecord(ev.e[0], stream));
    if (!dev::detail::enqueue_upload(run.ws, run.p, b, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[1], stream));
    if (!dev::detail::enqueue_checks(run.ws, run.p, b, dev::needs_of<Scorer, Reducer>, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[2], stream));
    if (!dev::detail::enqueue_scores(run.ws, run.p, policies, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[3], stream));
    if (!dev::detail::enqueue_select(run.ws, run.p, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[8], stream));
    if (!dev::detail::enqueue_share(run.ws, run.p, b, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[4], stream));
    if (!dev::detail::enqueue_reduce(run.ws, run.p, policies, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[5], stream));
    if (!dev::detail::enqueue_compact(run.ws, run.p, b, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[6], stream));
    if (!dev::detail::enqueue_failure_log(run.ws, b, stream)) std::abort();
    BENCH_CUDA(cudaEventRecord(ev.e[7], stream));
    BENCH_CUDA(cudaEventSynchronize(ev.e[7]));
    // score_us counts the upload, as in runs 1-6 (before the checks existed).
    check_ms += ev.ms(1, 2), score_ms += ev.ms(0, 1) + ev.ms(2, 3), select_ms += ev.ms(3, 4), share_ms += ev.ms(8, 4);
    reduce_ms += ev.ms(4, 5), compact_ms += ev.ms(5, 6), log_ms += ev.ms(6, 7), total_ms += ev.ms(0, 6);
    state.SetIterationTime(ev.ms(0, 6) / 1e3);  // without the log, as in runs 1-6
  }
  const double n = static_cast<double>(state.iterations());
  check_ms /= n, score_ms /= n, select_ms /= n, share_ms /= n, reduce_ms /= n, compact_ms /= n, log_ms /= n;
  total_ms /= n;
  if (!dev::read_status(run.temp) || !dev::read_failure_log(f.failure_log)) std::abort();
  f.restore(stream);
  double attention_ms = 0;
  constexpr int reps = 5;
  for (int i = 0; i <= reps; ++i) {
    const float ms = f.attention_ms(stream, ev.e[0], ev.e[1]);
    if (i > 0) attention_ms += ms;
  }
  attention_ms /= reps;
  const double flops = fixture<Layout>::attention_flops();
  state.counters["check_us"] = check_ms * 1e3;  // NaN/Inf in the chunk's K and V (and the window)
  state.counters["log_us"] = log_ms * 1e3;      // the failure log's one-thread launch
  state.counters["score_us"] = score_ms * 1e3;
  state.counters["select_us"] = select_ms * 1e3;
  if (share >= 0) state.counters["share_us"] = share_ms * 1e3;  // the heads' competition, within select_us
  if constexpr (Reducer::merges) state.counters["merge_us"] = reduce_ms * 1e3;
  state.counters["compact_us"] = compact_ms * 1e3;
  state.counters["attention_us"] = attention_ms * 1e3;
  state.counters["attention_TFLOPs"] = flops / (attention_ms * 1e9);
  state.counters["select_compact_over_attention"] = (select_ms + compact_ms) / attention_ms;
  state.counters["compress_over_attention"] = total_ms / attention_ms;
  const double fast_attention_ms = flops / 400e12 * 1e3;  // an attention at 400 TFLOP/s
  state.counters["select_compact_over_400TFLOPs_attention"] = (select_ms + compact_ms) / fast_attention_ms;
  state.counters["compress_over_400TFLOPs_attention"] = total_ms / fast_attention_ms;
  if (head_lengths_out != nullptr) BENCH_CUDA(cudaFree(head_lengths_out));
}

/// The merge without its promise of locality: the device walks each segment's dropped tokens
/// in slot order on one warp (reduce_kernel.cuh), the merge's path before the rounds.
struct walked_merge : reducers::merge {
  static constexpr bool local = false;
};

/// The merge's rounds (reduce_rounds.cuh) against that walk, on the same selection in the same
/// run, and the rounds' walk threshold swept (the fewest ready turns a round shares out before
/// the first warp walks the rest; the library's is rounds_min_ready). Each variant runs once
/// from the pristine caches first, and all must leave the same K, V and metadata, bit for bit.
/// The walk runs on the rounds' workspace: it reads the same selection, and not the lists.
template <class Scorer, class Structure = structures::sequence>
void merge_rounds_vs_walk(benchmark::State& state, Scorer scorer, Structure structure = {}) {
  using Layout = layouts::nhd;
  fixture<Layout>& f = the_fixture<Layout>();
  const auto b = f.batch_view();
  const prepared<Scorer, Layout, reducers::merge> selected(b);
  const auto& ws = selected.ws;
  const auto& p = selected.p;
  const dev::compress_policies<Scorer, Structure, reducers::merge> rounds_policies{scorer, structure};
  const dev::compress_policies<Scorer, Structure, walked_merge> walk_policies{scorer, structure};
  cudaStream_t stream = 0;
  f.restore(stream);
  if (!dev::detail::enqueue_upload(ws, p, b, stream) || !dev::detail::enqueue_scores(ws, p, rounds_policies, stream) ||
      !dev::detail::enqueue_select(ws, p, stream))
    std::abort();

  // The variants: the walk, then the rounds at each threshold (1 << 30: the walk right after
  // the list). The library's threshold is rounds_min_ready, 4.
  const char* const names[] = {"walk",        "rounds_min1",  "rounds_min2", "rounds_min4",
                               "rounds_min8", "rounds_min32", "rounds_never"};
  constexpr int count = static_cast<int>(sizeof names / sizeof names[0]), library = 3;
  static_assert(dev::detail::rounds_min_ready == 4, "variant 3 is timed as the library's");
  const auto run = [&](int v) {
    dev::status s;
    switch (v) {
      case 0: s = dev::detail::enqueue_reduce(ws, p, walk_policies, stream); break;
      case 1: s = dev::detail::enqueue_reduce<1>(ws, p, rounds_policies, stream); break;
      case 2: s = dev::detail::enqueue_reduce<2>(ws, p, rounds_policies, stream); break;
      case 3: s = dev::detail::enqueue_reduce<4>(ws, p, rounds_policies, stream); break;
      case 4: s = dev::detail::enqueue_reduce<8>(ws, p, rounds_policies, stream); break;
      case 5: s = dev::detail::enqueue_reduce<32>(ws, p, rounds_policies, stream); break;
      default: s = dev::detail::enqueue_reduce<(1 << 30)>(ws, p, rounds_policies, stream); break;
    }
    if (!s) std::abort();
  };

  // The same caches after every variant.
  std::vector<std::vector<unsigned char>> first;
  for (int v = 0; v < count; ++v) {
    f.restore(stream);
    run(v);
    BENCH_CUDA(cudaStreamSynchronize(stream));
    BENCH_CUDA(cudaGetLastError());
    for (index_t r = 0; r < batch; ++r) {
      const std::pair<const void*, std::size_t> parts[] = {{f.k[r], f.elems * sizeof(T)},
                                                           {f.v[r], f.elems * sizeof(T)},
                                                           {f.meta[r], f.metas * sizeof(token_meta)}};
      for (std::size_t i = 0; i < 3; ++i) {
        std::vector<unsigned char> bytes(parts[i].second);
        BENCH_CUDA(cudaMemcpy(bytes.data(), parts[i].first, bytes.size(), cudaMemcpyDeviceToHost));
        if (v == 0) first.push_back(std::move(bytes));
        else if (bytes != first[static_cast<std::size_t>(r * 3) + i]) {
          std::fprintf(stderr, "merge_rounds_vs_walk: %s leaves other caches than %s (request %d)\n", names[v],
                       names[0], static_cast<int>(r));
          std::abort();
        }
      }
    }
  }
  if (!dev::read_status(selected.temp)) std::abort();

  events ev;
  double ms[count] = {};
  for (auto _ : state) {
    for (int v = 0; v < count; ++v) {
      f.restore(stream);
      BENCH_CUDA(cudaEventRecord(ev.e[0], stream));
      run(v);
      BENCH_CUDA(cudaEventRecord(ev.e[1], stream));
      BENCH_CUDA(cudaEventSynchronize(ev.e[1]));
      const float t = ev.ms(0, 1);
      ms[v] += t;
      if (v == library) state.SetIterationTime(t / 1e3);
    }
  }
  const double n = static_cast<double>(state.iterations());
  int best = 1;
  for (int v = 0; v < count; ++v) {
    ms[v] /= n;
    state.counters[std::string(names[v]) + "_us"] = ms[v] * 1e3;
    if (v > 0 && ms[v] < ms[best]) best = v;
  }
  state.counters["walk_over_rounds"] = ms[0] / ms[library];  // the rounds' speed-up over the walk
  state.counters["best_rounds_over_library"] = ms[library] / ms[best];
  state.SetLabel(std::string("fastest: ") + names[best]);
}

}  // namespace

// Arguments: compaction tile slots, 0 = the planned size (64 here), and the copy batch (4 is
// the library's). The other values are experiments: above 48 KiB of staging the launch opts
// in to more shared memory. Copy batches 1, 2, 4, 8 have 2, 4, 8, 16 loads in flight a thread
// (SASS, nvcc 13.0, sm_90); 8 spills 668 bytes under the 5-blocks-an-SM register bound.
BENCHMARK_CAPTURE(compact_nhd, oldest, scorers::recency{.num_sinks = 4})
    ->Args({0, 4})->Args({32, 4})->Args({128, 4})->Args({256, 4})->Args({0, 1})->Args({0, 2})->Args({0, 8})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compact_nhd, spread, scorers::key_norm{})
    ->Args({0, 4})->Args({32, 4})->Args({128, 4})->Args({256, 4})->Args({0, 1})->Args({0, 2})->Args({0, 8})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compact_hnd, oldest, scorers::recency{.num_sinks = 4})
    ->Args({0, 4})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compact_hnd, spread, scorers::key_norm{})
    ->Args({0, 4})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, key_norm, scorers::key_norm{})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, key_diff, scorers::key_diff{})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, recency, scorers::recency{.num_sinks = 4})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, snapkv_window32, scorers::observation_window{.pool_radius = 3})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, key_norm_shared_heads, scorers::key_norm{}, reducers::evict{},
                  structures::sequence{}, 0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, key_norm_merge, scorers::key_norm{}, reducers::merge{})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// The structure-aware policies, on the chunk's structure: 28×28-token frames, slot = index
// (the fixture's logical indices are 0 … 4879), so a token's grid and frame neighbours are
// resident and found by the structure lookups the policies make.
constexpr structures::temporal_frames frames{.frames = 7, .rows = 28, .cols = 28};
BENCHMARK_CAPTURE(compress_vs_attention, frames_temporal, scorers::temporal_redundancy{.max_lookback = 2},
                  reducers::evict{}, frames)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, frames_spatial, scorers::spatial_redundancy{}, reducers::evict{}, frames)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, frames_blend_key_diff_temporal,
                  scorers::blend<scorers::key_diff, scorers::temporal_redundancy>{}, reducers::evict{}, frames)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(compress_vs_attention, frames_key_diff_merge, scorers::key_diff{}, reducers::merge{}, frames)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// Last, so that anything it finds cannot cost the cases above their figures.
BENCHMARK_CAPTURE(merge_rounds_vs_walk, key_norm, scorers::key_norm{})
    ->Iterations(10)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(merge_rounds_vs_walk, frames_key_diff, scorers::key_diff{}, frames)
    ->Iterations(10)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::puts("bench_device_compress: no usable GPU (cudaGetDeviceCount failed or found none): skipped");
    return 0;
  }
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f GB memory)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / 1e9);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
