// tests/device/simt/test_simt.cpp — the SIMT emulator itself (simt.hpp): what its barriers,
// warp collectives, block scan and launches give, on small kernels with known answers. The
// device tests that run on it (test_parity_on_cpu.cpp, test_errors_on_cpu.cpp) are only as
// good as this.
#include "simt.hpp"

#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include <cuda/atomic>

#include <cub/block/block_scan.cuh>
#include <kvcap/device/launch.cuh>

namespace {

using kvcap::device::detail::dynamic_shared;
using kvcap::device::detail::launch;

/// Each thread publishes its index, then reads its neighbour's after the barrier; then the
/// buffer is rewritten the other way round after a second barrier.
__global__ void neighbours_after_barrier(int* out) {
  __shared__ int slots[128];
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  slots[t] = t;
  __syncthreads();
  const int right = slots[(t + 1) % n];
  __syncthreads();
  slots[n - 1 - t] = 1000 + t;
  __syncthreads();
  out[blockIdx.x * n + t] = right * 10000 + slots[t];
}

__global__ void warp_collectives(unsigned* out) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  unsigned sum = lane;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const unsigned down = __shfl_down_sync(0xffffffffu, lane * 3, 5);
  const float f = __shfl_xor_sync(0xffffffffu, static_cast<float>(lane) + 0.5f, 1);
  const unsigned odd = __ballot_sync(0xffffffffu, (lane + warp) % 2 == 1);
  unsigned* o = out + threadIdx.x * 4;
  o[0] = sum, o[1] = down, o[2] = static_cast<unsigned>(f * 2.f), o[3] = odd;
}

/// Lanes 16..31 of every warp exit first; the rest ballot among themselves.
__global__ void ballot_after_exit(unsigned* out) {
  const unsigned lane = threadIdx.x % 32;
  if (lane >= 16) return;
  out[threadIdx.x] = __ballot_sync(0xffffffffu, lane % 4 == 0);
}

__global__ void block_scans(long* out) {
  using scan = cub::BlockScan<long, 64>;
  __shared__ scan::TempStorage temp;
  const long t = threadIdx.x;
  long exclusive, inclusive, total_a, total_b;
  scan(temp).ExclusiveSum(t + 1, exclusive, total_a);
  __syncthreads();
  scan(temp).InclusiveSum(t + 1, inclusive, total_b);
  out[t * 4 + 0] = exclusive, out[t * 4 + 1] = inclusive, out[t * 4 + 2] = total_a, out[t * 4 + 3] = total_b;
}

__global__ void count_blocks(int* hits, int* order, int* next) {
  if (threadIdx.x == 0) order[atomicAdd(next, 1)] = static_cast<int>(blockIdx.x + gridDim.x * blockIdx.y);
  atomicAdd(hits + blockIdx.x + gridDim.x * blockIdx.y, 1);
}

/// Block b sets flags[b], then waits until every block of the grid has set its own: it ends
/// only if all the blocks are resident at once. Each keeps its index in static shared memory
/// across the wait, and reports what it reads back there.
__global__ void wait_for_every_block(int* flags, unsigned* kept) {
  __shared__ unsigned mine;
  const unsigned b = blockIdx.x;
  if (threadIdx.x == 0) mine = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    cuda::atomic_ref<int, cuda::thread_scope_device>(flags[b]).store(1, cuda::memory_order_release);
    for (unsigned other = 0; other < gridDim.x; ++other)
      while (cuda::atomic_ref<int, cuda::thread_scope_device>(flags[other]).load(cuda::memory_order_acquire) == 0)
        __nanosleep(100);
  }
  __syncthreads();
  kept[b * blockDim.x + threadIdx.x] = mine;
}

/// Thread 0 of each block logs its block index after each of `barriers` barriers.
__global__ void log_barriers(int barriers, int* log, int* next) {
  for (int i = 0; i < barriers; ++i) {
    __syncthreads();
    if (threadIdx.x == 0) log[atomicAdd(next, 1)] = static_cast<int>(blockIdx.x);
  }
}

__global__ void read_dynamic_shared(unsigned* out, unsigned words) {
  const unsigned* s = dynamic_shared<unsigned>();
  if (threadIdx.x < words) out[threadIdx.x] = s[threadIdx.x];
}

}  // namespace

TEST_CASE("simt: a barrier publishes shared memory, in every order the threads run in") {
  for (unsigned block : {32u, 96u, 128u}) {
    std::vector<int> out(4 * block, -1);
    launch(neighbours_after_barrier, 4, block, 0, nullptr, out.data());
    for (unsigned i = 0; i < out.size(); ++i) {
      const int t = static_cast<int>(i % block), n = static_cast<int>(block);
      CHECK(out[i] == (t + 1) % n * 10000 + 1000 + (n - 1 - t));
    }
  }
}

TEST_CASE("simt: shuffles and ballots exchange within each warp") {
  std::vector<unsigned> out(96 * 4);
  launch(warp_collectives, 1, 96, 0, nullptr, out.data());
  for (unsigned t = 0; t < 96; ++t) {
    const unsigned lane = t % 32, warp = t / 32;
    CHECK(out[t * 4 + 0] == 496);                                // 0 + 1 + ... + 31
    CHECK(out[t * 4 + 1] == (lane + 5 < 32 ? lane + 5 : lane) * 3);  // beyond the warp: own value
    CHECK(out[t * 4 + 2] == (lane ^ 1u) * 2 + 1);
    CHECK(out[t * 4 + 3] == (warp % 2 == 0 ? 0xaaaaaaaau : 0x55555555u));
  }
}

TEST_CASE("simt: exited lanes take no part in a ballot") {
  std::vector<unsigned> out(64, 7);
  launch(ballot_after_exit, 1, 64, 0, nullptr, out.data());
  for (unsigned t = 0; t < 64; ++t) CHECK(out[t] == (t % 32 < 16 ? 0x1111u : 7u));
}

TEST_CASE("simt: the block scan stand-in sums as CUB's") {
  std::vector<long> out(64 * 4);
  launch(block_scans, 1, 64, 0, nullptr, out.data());
  for (long t = 0; t < 64; ++t) {
    CHECK(out[t * 4 + 0] == t * (t + 1) / 2);
    CHECK(out[t * 4 + 1] == (t + 1) * (t + 2) / 2);
    CHECK(out[t * 4 + 2] == 64 * 65 / 2);
    CHECK(out[t * 4 + 3] == 64 * 65 / 2);
  }
}

TEST_CASE("simt: every block of a grid runs once, in a shuffled order") {
  std::vector<int> hits(12 * 5, 0), order(12 * 5, -1);
  int next = 0;
  launch(count_blocks, dim3(12, 5), 64, 0, nullptr, hits.data(), order.data(), &next);
  CHECK(next == 60);
  for (const int h : hits) CHECK(h == 64);
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> expected(60);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(sorted == expected);
  CHECK(order != expected);  // 60! orders: the identity means no shuffle
}

TEST_CASE("simt: dynamic shared memory starts uninitialised (0xff bytes), its size as launched") {
  std::vector<unsigned> out(32, 0);
  launch(read_dynamic_shared, 1, 32, 32 * sizeof(unsigned), nullptr, out.data(), 32u);
  for (const unsigned w : out) CHECK(w == 0xffffffffu);
}

namespace {
/// Sets the emulator's resident blocks for a scope.
struct resident_blocks {
  explicit resident_blocks(int n) : before(kvcap::simt::resident_setting()) { kvcap::simt::resident_setting() = n; }
  ~resident_blocks() { kvcap::simt::resident_setting() = before; }
  int before;
};
}  // namespace

TEST_CASE("simt: resident blocks run side by side, each with its own static shared memory") {
  for (const int resident : {2, 4}) {
    CAPTURE(resident);
    const resident_blocks scope(resident);
    std::vector<int> flags(static_cast<std::size_t>(resident), 0);
    std::vector<unsigned> kept(static_cast<std::size_t>(resident) * 64, 99);
    launch(wait_for_every_block, resident, 64, 0, nullptr, flags.data(), kept.data());
    for (std::size_t i = 0; i < kept.size(); ++i) CHECK(kept[i] == i / 64);
  }
}

TEST_CASE("simt: resident blocks interleave at barriers; one resident block runs to its end first") {
  constexpr int blocks = 8, barriers = 8;
  const auto switches = [&](int resident) {
    const resident_blocks scope(resident);
    std::vector<int> log(blocks * barriers, -1);
    int next = 0;
    launch(log_barriers, blocks, 64, 0, nullptr, barriers, log.data(), &next);
    REQUIRE(next == blocks * barriers);
    std::vector<int> per_block(blocks, 0);
    int changes = 0;
    for (std::size_t i = 0; i < log.size(); ++i) {
      ++per_block[static_cast<std::size_t>(log[i])];
      changes += i > 0 && log[i] != log[i - 1] ? 1 : 0;
    }
    for (const int n : per_block) CHECK(n == barriers);
    return changes;
  };
  CHECK(switches(1) == blocks - 1);  // one block after another
  CHECK(switches(4) > 2 * blocks);   // a worker drawn at random after each barrier
}
