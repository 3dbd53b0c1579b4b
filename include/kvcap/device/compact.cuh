#pragma once
// kvcap/device/compact.cuh — stable, ascending, in-place compaction of K, V and metadata, for
// every layout, across the whole ragged batch in one launch.
//
// A kept slot only ever moves toward the front (its destination is the number of kept slots
// before it), so the destinations of a tile's moving rows overwrite only slots of the same or
// earlier tiles of its segment. Blocks take tiles in order from a counter (so every tile a
// block may wait for is already taken by a running block). For a tile, a block finds its kept
// slots and their destinations (a block scan plus the tile's kept_before), stages the rows that
// move (K, V, metadata) in shared memory, publishes "read" for the tile, waits until every
// earlier tile holding a slot its destinations overwrite has published, then writes.
//
// The blocks are persistent and double-buffered: while a block waits for a tile's earlier
// tiles and writes it, the rows of its next tile are already on their way into the other
// stage (asynchronous copies, cuda_pipeline.h), so the latency of taking a tile, scanning and
// waiting hides behind data in flight. Progress is guaranteed: the smallest tile not yet
// published is either a block's current tile (its rows have arrived; it publishes before it
// waits) or the next tile of a block whose current tile is smaller, hence published, hence
// only waiting on published tiles.
//
// Nothing is copied outside the cache but two tiles per block; rows that stay in place are
// not touched. When the device found a metadata error (the report is set), no block writes
// anything. The tile flags and the tile counter start at zero: the select kernel resets them
// (select.cuh), so compaction always follows a selection.
//
// Rows move in vectors of VecBytes (16 when every row start is 16-byte aligned).

#include <cuda/atomic>
#include <cuda_pipeline.h>
#include <cub/block/block_scan.cuh>

#include "score_kernel.cuh"

namespace kvcap::device::detail {

inline constexpr int compact_threads = static_cast<int>(max_tile_tokens);

template <int Bytes>
struct vector_of;
template <> struct vector_of<16> { using type = uint4; };
template <> struct vector_of<8> { using type = uint2; };
template <> struct vector_of<4> { using type = unsigned int; };
template <> struct vector_of<2> { using type = unsigned short; };
template <> struct vector_of<1> { using type = unsigned char; };

/// *dst = *src, asynchronously where the size allows (4, 8 or 16 bytes; completes by
/// __pipeline_wait_prior), else at once.
template <class V>
__device__ inline void copy_to_stage(V* dst, const V* src) {
  if constexpr (sizeof(V) >= 4) __pipeline_memcpy_async(dst, src, sizeof(V));
  else *dst = *src;
}

/// What a stage holds: a tile and its moving rows' destinations.
struct compact_stage {
  index_t tile, segment;
  int num_moving;
};

template <int VecBytes, class T, class Layout>
__global__ void __launch_bounds__(compact_threads)
    compact_kernel(workspace_layout<T, Layout> ws, index_t total_tiles, index_t tile_tokens) {
  using vec = typename vector_of<VecBytes>::type;
  using scan = cub::BlockScan<int, compact_threads>;
  using flag = cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>;
  constexpr int meta_words = static_cast<int>(sizeof(token_meta) / sizeof(std::uint64_t));
  static_assert(sizeof(token_meta) % sizeof(std::uint64_t) == 0 && alignof(token_meta) >= alignof(std::uint64_t));

  extern __shared__ uint4 staging_[];  // 2 stages of (row, vec) K, then (row, vec) V, then (row, word) meta
  __shared__ typename scan::TempStorage temp;
  __shared__ index_t taken;  // the tile the block took last (total_tiles: none left)
  __shared__ bool abort;
  __shared__ compact_stage stage[2];
  // The moving rows of the tile being loaded (slots and K/V element offsets: K and V share
  // the mapping), and of each stage's destinations, found once per row so that the copy
  // loops only add. With two stagings of at most staging_bytes_limit this stays within the
  // 48 KiB a block has without opting in.
  __shared__ std::int32_t src_slot[compact_threads], dst_slot[2][compact_threads];
  __shared__ index_t src_row[compact_threads], dst_row[2][compact_threads];

  const int t = threadIdx.x;
  const int row_vecs = static_cast<int>(ws.views[0].mapping.head_dim * static_cast<index_t>(sizeof(T)) / VecBytes);
  const int step_r = compact_threads / row_vecs, step_c = compact_threads % row_vecs;
  const index_t region = (tile_tokens * row_vecs * VecBytes + 15) / 16 * 16;
  const index_t stage_bytes = stage_stride(tile_tokens, row_vecs * VecBytes);
  const auto stage_k = [&](int s) { return reinterpret_cast<vec*>(reinterpret_cast<unsigned char*>(staging_) + s * stage_bytes); };
  const auto stage_v = [&](int s) { return reinterpret_cast<vec*>(reinterpret_cast<unsigned char*>(staging_) + s * stage_bytes + region); };
  const auto stage_m = [&](int s) {
    return reinterpret_cast<std::uint64_t*>(reinterpret_cast<unsigned char*>(staging_) + s * stage_bytes + 2 * region);
  };

  // Tile g into stage s: destinations, then the moving rows' copies started (one commit).
  const auto start_tile = [&](int s, index_t g) {
    const index_t a = ws.tile_segment[g];
    const plan_segment seg = ws.segments[a];
    const auto view = ws.views[seg.view];
    const index_t begin = (g - ws.tile_indptr[a]) * tile_tokens;
    const index_t end = begin + tile_tokens < seg.length ? begin + tile_tokens : seg.length;
    const selection sel = ws.selections[a];
    const index_t tok = begin + t;
    const bool kept = tok < end && sel.keeps(ws.keys[ws.token_indptr[a] + tok]);
    int rank, moving_rank, num_moving;
    scan(temp).ExclusiveSum(kept ? 1 : 0, rank);
    const index_t dst = ws.tile_kept_before[g] + rank;
    const bool moving = kept && dst != tok;
    __syncthreads();
    scan(temp).ExclusiveSum(moving ? 1 : 0, moving_rank, num_moving);
    if (moving) {
      src_slot[moving_rank] = static_cast<std::int32_t>(tok), dst_slot[s][moving_rank] = static_cast<std::int32_t>(dst);
      src_row[moving_rank] = view.mapping(tok, seg.head), dst_row[s][moving_rank] = view.mapping(dst, seg.head);
    }
    if (t == 0) stage[s] = {g, a, num_moving};
    __syncthreads();
    // Vector i of the K (V) stage is vector c of moving row r, i = r · row_vecs + c; each
    // thread steps (r, c) by blockDim without dividing.
    vec* k_out = stage_k(s);
    vec* v_out = stage_v(s);
    int r = t / row_vecs, c = t % row_vecs;
    for (int i = t; i < num_moving * row_vecs; i += compact_threads) {
      copy_to_stage(k_out + i, reinterpret_cast<const vec*>(view.k + src_row[r]) + c);
      copy_to_stage(v_out + i, reinterpret_cast<const vec*>(view.v + src_row[r]) + c);
      r += step_r, c += step_c;
      if (c >= row_vecs) c -= row_vecs, ++r;
    }
    std::uint64_t* m_out = stage_m(s);
    for (int i = t; i < num_moving * meta_words; i += compact_threads)
      copy_to_stage(m_out + i, reinterpret_cast<const std::uint64_t*>(&view.meta_at(src_slot[i / meta_words], seg.head)) +
                                   i % meta_words);
    __pipeline_commit();
  };

  // Stage s's rows to their destinations, once the earlier tiles they overwrite have read:
  // slots [dst first, dst last] lie in tiles [first / tile_tokens, last / tile_tokens] of the
  // segment, all at or before this one. The first warp polls them side by side.
  const auto finish_tile = [&](int s) {
    const compact_stage st = stage[s];
    if (st.num_moving == 0) return;
    const plan_segment seg = ws.segments[st.segment];
    const auto view = ws.views[seg.view];
    if (t < 32) {
      const index_t first = ws.tile_indptr[st.segment] + dst_slot[s][0] / tile_tokens;
      const index_t last = ws.tile_indptr[st.segment] + dst_slot[s][st.num_moving - 1] / tile_tokens;
      for (index_t other = first + t; other <= last && other < st.tile; other += 32)
        while (flag(ws.tile_done[other]).load(cuda::memory_order_acquire) == 0) __nanosleep(64);
      __threadfence();
    }
    __syncthreads();
    const vec* k_in = stage_k(s);
    const vec* v_in = stage_v(s);
    int r = t / row_vecs, c = t % row_vecs;
    for (int i = t; i < st.num_moving * row_vecs; i += compact_threads) {
      reinterpret_cast<vec*>(view.k + dst_row[s][r])[c] = k_in[i];
      reinterpret_cast<vec*>(view.v + dst_row[s][r])[c] = v_in[i];
      r += step_r, c += step_c;
      if (c >= row_vecs) c -= row_vecs, ++r;
    }
    const std::uint64_t* m_in = stage_m(s);
    for (int i = t; i < st.num_moving * meta_words; i += compact_threads)
      reinterpret_cast<std::uint64_t*>(&view.meta_at(dst_slot[s][i / meta_words], seg.head))[i % meta_words] = m_in[i];
  };

  if (t == 0) {
    abort = flag(ws.report->code).load(cuda::memory_order_relaxed) != 0;
    taken = atomicAdd(ws.tile_done + total_tiles, 1);
  }
  __syncthreads();
  if (abort || taken >= total_tiles) return;  // every block aborts alike: nobody waits for anybody
  int s = 0;
  start_tile(s, taken);
  for (;;) {
    __syncthreads();  // everybody has read `taken`; stage s ^ 1 is free
    if (t == 0) taken = atomicAdd(ws.tile_done + total_tiles, 1);
    __syncthreads();
    const index_t next = taken;
    const bool more = next < total_tiles;
    if (more) start_tile(s ^ 1, next);
    // This thread's copies of stage s have landed (all but the newest group), then everyone's.
    if (more) __pipeline_wait_prior(1);
    else __pipeline_wait_prior(0);
    __syncthreads();
    if (t == 0) {
      __threadfence();
      flag(ws.tile_done[stage[s].tile]).store(1, cuda::memory_order_release);
    }
    finish_tile(s);
    if (!more) return;
    s ^= 1;
  }
}

}  // namespace kvcap::device::detail
