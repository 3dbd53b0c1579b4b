#pragma once
// kvcap/device/reduce_rounds.cuh — a local reducer's turn on the device (reducers::merge):
// one block per active segment takes the turns of the segment's dropped tokens in rounds.
//
// The host takes the turns one after another, in slot order. A local reducer's turn touches
// only the kept slots it names as the token's candidates (reducers/concept.hpp), so the order
// only matters between turns that share a candidate. A round:
//   1. every waiting token claims its candidates, and each kept slot keeps its first claimant
//      in slot order (an atomic minimum over the tokens' places in the list);
//   2. a token that won every claim is ready. Every earlier token that shares a candidate with
//      it has taken its turn (a waiting one would have won that claim), and no two ready
//      tokens share a candidate;
//   3. the block's warps take the ready tokens' turns side by side, a warp each.
// So the caches end bit for bit as the slot-order walk leaves them, whatever the order within
// a round. Each round readies at least the first waiting token. When a round readies fewer
// than half as many tokens as the block has warps (a run of drops between the same two kept
// slots depends on itself all along, as recency's do), the first warp takes the remaining
// turns in slot order.
// Deferring a ready token to a later round, or to that walk, is also exact: the tokens that
// share its candidates after it still wait for it.
//
// Before the rounds, the block lists the segment's dropped tokens in slot order with their
// nearest kept slots. Each warp takes a stretch of whole 32-slot words and reads the kept
// flags a word per ballot. The stretches' first and last kept slots and drop counts pass
// between warps through shared memory. The list and the claims live in the workspace
// (policy_needs::dropped_lists: a slot each), so a segment of any length runs, and nothing
// is allocated. When the device found a metadata error (the report is set), nothing runs.

#include <cuda/atomic>

#include <bit>
#include <cstddef>
#include <cstdint>

#include "launch.cuh"
#include "reduce_context.cuh"
#include "reduce_kernel.cuh"
#include "warp_group.cuh"

namespace kvcap::device::detail {

inline constexpr int rounds_threads = 256;  // one segment per block
inline constexpr int rounds_warps = rounds_threads / 32;
/// Ready turns a round holds; more wait for the next round.
inline constexpr int rounds_ready_capacity = 1024;
/// A round that readies fewer turns hands the rest to the slot-order walk: half the warps
/// idle, and a round's claims cost about a turn (a guess, to be timed on a GPU).
inline constexpr int rounds_min_ready = rounds_warps / 2;
/// Static shared memory of the rounds kernel, besides the warps' staging.
inline constexpr std::size_t rounds_static_smem = (3 * rounds_warps + rounds_ready_capacity + 1) * sizeof(std::int32_t);

/// Dynamic shared memory: rounds_warps × `scratch_bytes`, a warp's own at its index. A round
/// that readies fewer than `MinReady` turns hands the rest to the walk (any value ≥ 1 leaves
/// the result the same; benchmarks time others against rounds_min_ready).
template <class T, class Layout, class Scorer, class Structure, class Reducer, int MinReady = rounds_min_ready>
__global__ void __launch_bounds__(rounds_threads)
    reduce_rounds_kernel(workspace_layout<T, Layout> ws, std::size_t scratch_bytes,
                         compress_policies<Scorer, Structure, Reducer> policies) {
  constexpr std::int32_t none = INT32_MAX;  // no kept slot in a stretch; an unclaimed slot
  __shared__ std::int32_t stretch_first[rounds_warps], stretch_last[rounds_warps], stretch_drops[rounds_warps];
  __shared__ std::int32_t ready[rounds_ready_capacity];
  __shared__ std::int32_t ready_count;
  if (cuda::atomic_ref<std::int32_t, cuda::thread_scope_device>(ws.report->code).load(cuda::memory_order_relaxed) != 0)
    return;  // block-uniform: no kernel of this call writes the report after the keys

  const index_t a = blockIdx.x;
  auto ctx = reduce_context_of(ws, a, policies.structure);
  dropped_token* const dropped = ws.dropped + ws.token_indptr[a];
  std::int32_t* const claims = ws.claims + ws.token_indptr[a];
  const int warp_index = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const warp_group warp{dynamic_shared<unsigned char>() + warp_index * scratch_bytes, scratch_bytes};
  const std::uint32_t below = (1u << lane) - 1u, at_or_below = below | (1u << lane);

  // The list. This warp's stretch of slots: [begin, end).
  const index_t n = ctx.num_tokens(), words = (n + 31) / 32, per_warp = (words + rounds_warps - 1) / rounds_warps;
  const index_t begin = warp_index * per_warp * 32 < n ? warp_index * per_warp * 32 : n;
  const index_t end = begin + per_warp * 32 < n ? begin + per_warp * 32 : n;
  {
    std::int32_t first = none, last = -1, drops = 0;
    for (index_t base = begin; base < end; base += 32) {
      const index_t mine = base + lane;
      const std::uint32_t kept = warp.ballot(mine < end && ctx.is_kept(mine)), in = warp.ballot(mine < end);
      if (kept != 0) {
        if (first == none) first = static_cast<std::int32_t>(base + lowest_bit(kept));
        last = static_cast<std::int32_t>(base + highest_bit(kept));
      }
      drops += std::popcount(in & ~kept);
    }
    if (lane == 0) stretch_first[warp_index] = first, stretch_last[warp_index] = last, stretch_drops[warp_index] = drops;
  }
  __syncthreads();
  index_t before = -1, after_stretch = n, listed = 0, total = 0;  // listed: this stretch's first place in the list
  for (int w = 0; w < rounds_warps; ++w) {
    if (w < warp_index) {
      before = stretch_last[w] > before ? stretch_last[w] : before;
      listed += stretch_drops[w];
    }
    if (w > warp_index && after_stretch == n && stretch_first[w] != none) after_stretch = stretch_first[w];
    total += stretch_drops[w];
  }
  index_t open = listed;  // tokens listed from here on wait for a kept slot after them
  for (index_t base = begin; base < end; base += 32) {
    const index_t mine = base + lane;
    const bool is_kept = mine < end && ctx.is_kept(mine);
    const std::uint32_t kept = warp.ballot(is_kept), drop = warp.ballot(mine < end) & ~kept;
    if (mine < end && !is_kept) {
      const std::uint32_t kept_before = kept & below, kept_after = kept & ~at_or_below;
      dropped_token d;
      d.slot = static_cast<std::int32_t>(mine);
      d.before = static_cast<std::int32_t>(kept_before != 0 ? base + highest_bit(kept_before) : before);
      d.after = kept_after != 0 ? static_cast<std::int32_t>(base + lowest_bit(kept_after)) : -1;  // -1: set below
      dropped[listed + std::popcount(drop & below)] = d;
    }
    if (kept != 0) {
      warp.sync();  // the entries listed so far, before other lanes complete them
      for (index_t j = open + lane; j < listed; j += 32) dropped[j].after = static_cast<std::int32_t>(base + lowest_bit(kept));
      const int last_kept = highest_bit(kept);
      open = listed + std::popcount(drop & (last_kept == 31 ? ~0u : (2u << last_kept) - 1u));
      before = base + last_kept;
    }
    listed += std::popcount(drop);
  }
  warp.sync();
  for (index_t j = open + lane; j < listed; j += 32) dropped[j].after = static_cast<std::int32_t>(after_stretch);
  __syncthreads();

  // The rounds. for_each_waiting(f) calls f(place, candidates, count) for every waiting token
  // of the list, a thread each.
  using near_slots = typename Reducer::bracket;
  const auto for_each_waiting = [&](auto&& f) {
    for (index_t i = threadIdx.x; i < total; i += rounds_threads) {
      const dropped_token d = dropped[i];
      if (d.done != 0) continue;
      index_t cand[Reducer::max_candidates];
      const int count = Reducer::candidates(ctx, d.slot, near_slots{d.before, d.after}, cand);
      f(static_cast<std::int32_t>(i), cand, count);
    }
  };
  for (;;) {
    for_each_waiting([&](std::int32_t, const index_t* cand, int count) {
      for (int c = 0; c < count; ++c) claims[cand[c]] = none;
    });
    if (threadIdx.x == 0) ready_count = 0;
    __syncthreads();
    for_each_waiting([&](std::int32_t i, const index_t* cand, int count) {
      for (int c = 0; c < count; ++c)
        cuda::atomic_ref<std::int32_t, cuda::thread_scope_block>(claims[cand[c]]).fetch_min(i, cuda::memory_order_relaxed);
    });
    __syncthreads();
    for_each_waiting([&](std::int32_t i, const index_t* cand, int count) {
      bool won = true;
      for (int c = 0; c < count; ++c) won = won && claims[cand[c]] == i;
      if (won)
        if (const int k = atomicAdd(&ready_count, 1); k < rounds_ready_capacity) ready[k] = i;
    });
    __syncthreads();
    const int count = ready_count < rounds_ready_capacity ? ready_count : rounds_ready_capacity;
    if (count < MinReady) break;  // block-uniform: too few to share out
    for (int k = warp_index; k < count; k += rounds_warps) {
      const dropped_token d = dropped[ready[k]];
      policies.reducer.reduce_token(ctx, d.slot, near_slots{d.before, d.after}, warp);
      if (lane == 0) dropped[ready[k]].done = 1;
    }
    __syncthreads();  // the folds and flags, before the next round reads them
  }

  // The remaining turns, in slot order, on the first warp.
  if (warp_index != 0) return;
  for (index_t base = 0; base < total; base += 32) {
    const std::uint32_t waiting = warp.ballot(base + lane < total && dropped[base + lane].done == 0);
    for (std::uint32_t bits = waiting; bits != 0; bits &= bits - 1) {
      const dropped_token d = dropped[base + lowest_bit(bits)];
      policies.reducer.reduce_token(ctx, d.slot, near_slots{d.before, d.after}, warp);
    }
  }
}

}  // namespace kvcap::device::detail
