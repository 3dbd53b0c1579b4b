#pragma once
// kvcap/device/compact.cuh — stable, ascending, in-place compaction of K, V and metadata, for
// every layout, across the whole ragged batch in one launch.
//
// A kept slot only ever moves toward the front (its destination is the number of kept slots
// before it), so the destinations of a tile's moving rows overwrite only slots of the same or
// earlier tiles of its segment. Each block takes the next tile in order from a counter (so
// every tile it may wait for is already running), finds its kept slots and their destinations
// (a block scan plus the tile's kept_before), stages the rows that move (K, V, metadata) in
// shared memory, publishes "read" for its tile, waits until every earlier tile whose slots its
// destinations overwrite has published, then writes. Nothing is copied outside the cache but
// one tile per block; rows that stay in place are not touched. When the device found a
// metadata error (the report is set), no block writes anything. The tile flags and the tile
// counter start at zero: the select kernel resets them (select.cuh), so compaction always
// follows a selection.
//
// Rows move in vectors of VecBytes (16 when every row start is 16-byte aligned), copy_batch
// vectors of K and of V per thread at a time: every load of a batch is issued before the first
// of its stores, so a thread has 2 · copy_batch loads in flight (128 bytes with 16-byte
// vectors; a tile of 64 rows of 256 bytes is read in one round trip). The loads are explicitly
// global (__ldcg, L2 only: each row is read once): a generic load may alias the shared-memory
// stores that follow it, and the compiler would then wait for each load before issuing the
// next. tools/device/sass_loads.sh counts the loads in flight in the machine code.
//
// A tile's flag is stored with release semantics (device scope) by one thread after the barrier
// that ends the staging, and polled with acquire semantics by the first warp before the barrier
// that begins the writes. The barriers order the rest of each block with those threads, so the
// reads of a tile happen before the writes that overwrite its rows, with no further fence: the
// inter-block semaphore of CUTLASS (semaphore.h) is built the same way. The CPU emulator runs
// one thread at a time and cannot see a weaker order; tools/device/sass_ordering.sh checks the
// machine code for the release, the acquire and the two barriers.
//
// `Probe` sees each tile's progress: thread 0 of its block calls it at each compact_phase,
// with the tile (-1 at `entered`, before the block has taken one), on its own copy of the
// probe (so a probe may carry a stamp from `entered` to `taken`). The default does nothing and
// compiles away. Benchmarks pass one that records a timeline, to show where a tile's time goes.

#include <cuda/atomic>
#include <cub/block/block_scan.cuh>

#include "launch.cuh"
#include "score_kernel.cuh"
#include "vectors.cuh"

namespace kvcap::device::detail {

inline constexpr int compact_threads = static_cast<int>(max_tile_tokens);
inline constexpr int copy_batch = 4;  ///< vectors of K (and of V) a thread has in flight at once
/// Blocks of the planned staging (≤ staging_bytes_limit, plus 7 KiB of tables) that fit an
/// H100/H200 SM's 228 KiB: registers are kept to what lets as many reside (≤ 51 a thread).
inline constexpr int compact_blocks_per_sm = 5;

/// The points of a tile's progress a compaction probe is told of, in order.
enum class compact_phase : int {
  entered,   ///< the block started (tile -1: none taken yet)
  taken,     ///< the block took the tile from the counter
  planned,   ///< the moving rows and their destinations are known
  staged,    ///< the moving rows are in shared memory, and "read" is published
  released,  ///< the earlier tiles the destinations overwrite have published
  written,   ///< this thread issued its last store
};
inline constexpr int compact_phases = 6;

/// The default probe: nothing.
struct no_compact_probe {
  __device__ void operator()(index_t /*tile*/, compact_phase) const {}
};

/// `CopyBatch`: vectors of K (and of V) a thread loads before it stores any (copy_batch; other
/// values move the same rows, and benchmarks time them).
template <int VecBytes, class T, class Layout, class Probe = no_compact_probe, int CopyBatch = copy_batch>
__global__ void __launch_bounds__(compact_threads, compact_blocks_per_sm)
    compact_kernel(workspace_layout<T, Layout> ws, index_t total_tiles, index_t tile_tokens, Probe probe = {}) {
  using vec = typename vector_of<VecBytes>::type;
  using scan = cub::BlockScan<int, compact_threads>;
  using flag = cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>;
  constexpr int meta_words = static_cast<int>(sizeof(token_meta) / sizeof(std::uint64_t));
  static_assert(sizeof(token_meta) % sizeof(std::uint64_t) == 0 && alignof(token_meta) >= alignof(std::uint64_t));

  unsigned char* const staging = dynamic_shared<unsigned char>();  // (row, vec) K, (row, vec) V, (row, word) meta
  __shared__ typename scan::TempStorage temp;
  __shared__ index_t tile_id;
  __shared__ bool abort;
  // The moving rows' slots, and their K/V element offsets (K and V share the mapping) found
  // once per row so that the copy loops only add. With the staging (at most
  // staging_bytes_limit) this stays within the 48 KiB a block has without opting in.
  __shared__ std::int32_t src_slot[compact_threads], dst_slot[compact_threads];
  __shared__ index_t src_row[compact_threads], dst_row[compact_threads];

  const int t = threadIdx.x;
  if (t == 0) {
    probe(-1, compact_phase::entered);
    abort = flag(ws.report->code).load(cuda::memory_order_relaxed) != 0;
    tile_id = atomicAdd(ws.tile_done + total_tiles, 1);
  }
  __syncthreads();
  if (abort) return;  // every block aborts alike: nobody waits for anybody
  const index_t g = tile_id;
  if (t == 0) probe(g, compact_phase::taken);
  const index_t a = ws.tile_segment[g];
  const plan_segment seg = ws.segments[a];
  const auto view = ws.views[seg.view];
  const index_t tile = g - ws.tile_indptr[a], begin = tile * tile_tokens;
  const index_t end = begin + tile_tokens < seg.length ? begin + tile_tokens : seg.length;
  const std::uint64_t* keys = ws.keys + ws.token_indptr[a];
  const selection sel = ws.selections[a];
  const index_t head = seg.head;

  // Destinations: kept_before of the tile plus the rank among its kept slots.
  const index_t tok = begin + t;
  const bool kept = tok < end && sel.keeps(keys[tok]);
  int rank, moving_rank, num_moving;
  scan(temp).ExclusiveSum(kept ? 1 : 0, rank);
  const index_t dst = ws.tile_kept_before[g] + rank;
  const bool moving = kept && dst != tok;
  __syncthreads();
  scan(temp).ExclusiveSum(moving ? 1 : 0, moving_rank, num_moving);
  if (moving) {
    src_row[moving_rank] = view.mapping(tok, head), dst_row[moving_rank] = view.mapping(dst, head);
    src_slot[moving_rank] = static_cast<std::int32_t>(tok), dst_slot[moving_rank] = static_cast<std::int32_t>(dst);
  }
  __syncthreads();
  if (t == 0) probe(g, compact_phase::planned);

  // Stage every moving row of this tile. Vector i of the K (V) stage is vector c of moving
  // row r, i = r · row_vecs + c; each thread steps (r, c) by blockDim without dividing.
  const int row_vecs = static_cast<int>(view.mapping.head_dim * static_cast<index_t>(sizeof(T)) / VecBytes);
  const int vecs = num_moving * row_vecs, step_r = compact_threads / row_vecs, step_c = compact_threads % row_vecs;
  const index_t region = (tile_tokens * row_vecs * VecBytes + 15) / 16 * 16;
  auto* stage_k = reinterpret_cast<vec*>(staging);
  auto* stage_v = reinterpret_cast<vec*>(staging + region);
  auto* stage_m = reinterpret_cast<unsigned long long*>(staging + 2 * region);
  const auto k_row = [&](index_t row, int c) { return reinterpret_cast<vec*>(view.k + row) + c; };
  const auto v_row = [&](index_t row, int c) { return reinterpret_cast<vec*>(view.v + row) + c; };
  const auto meta_row = [&](index_t slot) { return reinterpret_cast<unsigned long long*>(&view.meta_at(slot, head)); };
  const auto next_vector = [&](int& r, int& c) {  // (r, c) of vector i + compact_threads
    r += step_r, c += step_c;
    if (c >= row_vecs) c -= row_vecs, ++r;
  };
  // CopyBatch vectors of K and of V a thread at a time, loaded before any is stored (above).
  {
    int r = t / row_vecs, c = t % row_vecs;
    for (int i = t; i < vecs; i += CopyBatch * compact_threads) {
      vec k[CopyBatch], v[CopyBatch];
#pragma unroll
      for (int u = 0; u < CopyBatch; ++u) {
        if (i + u * compact_threads < vecs) k[u] = __ldcg(k_row(src_row[r], c)), v[u] = __ldcg(v_row(src_row[r], c));
        next_vector(r, c);
      }
#pragma unroll
      for (int u = 0; u < CopyBatch; ++u)
        if (i + u * compact_threads < vecs) stage_k[i + u * compact_threads] = k[u], stage_v[i + u * compact_threads] = v[u];
    }
  }
  for (int i = t; i < num_moving * meta_words; i += compact_threads)
    stage_m[i] = __ldcg(meta_row(src_slot[i / meta_words]) + i % meta_words);
  __syncthreads();
  if (t == 0) {
    flag(ws.tile_done[g]).store(1, cuda::memory_order_release);
    probe(g, compact_phase::staged);
  }
  if (num_moving == 0) {
    if (t == 0) probe(g, compact_phase::released), probe(g, compact_phase::written);
    return;
  }

  // Wait for the earlier tiles of this segment whose slots the destinations overwrite:
  // slots [dst_slot[0], last destination] lie in tiles [dst_slot[0] / tile_tokens,
  // last destination / tile_tokens], at or before this one. The first warp polls them side by
  // side (a lane per tile), not one round trip after another.
  if (t < 32) {
    const index_t first = ws.tile_indptr[a] + dst_slot[0] / tile_tokens;
    const index_t last = ws.tile_indptr[a] + dst_slot[num_moving - 1] / tile_tokens;
    for (index_t other = first + t; other <= last && other < g; other += 32)
      while (flag(ws.tile_done[other]).load(cuda::memory_order_acquire) == 0) __nanosleep(100);
  }
  __syncthreads();
  if (t == 0) probe(g, compact_phase::released);

  {
    int r = t / row_vecs, c = t % row_vecs;
    for (int i = t; i < vecs; i += CopyBatch * compact_threads) {
      vec k[CopyBatch], v[CopyBatch];
#pragma unroll
      for (int u = 0; u < CopyBatch; ++u)
        if (i + u * compact_threads < vecs) k[u] = stage_k[i + u * compact_threads], v[u] = stage_v[i + u * compact_threads];
#pragma unroll
      for (int u = 0; u < CopyBatch; ++u) {
        if (i + u * compact_threads < vecs) __stcg(k_row(dst_row[r], c), k[u]), __stcg(v_row(dst_row[r], c), v[u]);
        next_vector(r, c);
      }
    }
  }
  for (int i = t; i < num_moving * meta_words; i += compact_threads)
    __stcg(meta_row(dst_slot[i / meta_words]) + i % meta_words, stage_m[i]);
  if (t == 0) probe(g, compact_phase::written);
}

}  // namespace kvcap::device::detail
