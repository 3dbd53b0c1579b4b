#pragma once
// kvcap/device/compressor.cuh — the device executor: compress a ragged batch of caches in
// engine-owned device memory, in place, on a stream, with caller-supplied workspace.
//
//   std::size_t bytes = 0;
//   kvcap::device::compress(nullptr, bytes, batch, policies);           // size query
//   ... d_temp = a buffer of `bytes` (or of workspace_bound(limits, bytes), once, at start-up) ...
//   kvcap::device::status s = kvcap::device::compress(d_temp, bytes, batch, policies, stream);
//
// `batch` names the caches (one layer_view per (request, layer): contiguous NHD/HND, paged
// with a block table, or per-head varlen), each with its own length and budget; optional
// per-head lengths and budgets. For every (view, head) segment holding more tokens than its
// budget, the device scores every token with the policy's scorer (the same type the host
// executor runs, through the same context API), keeps the `budget` best by
// kvcap::ranks_before (protected first, higher score, smaller logical index: a radix select on
// 64-bit rank keys), lets the policy's reducer fold the dropped tokens into kept ones (merge;
// evict does nothing), and compacts the kept tokens' K, V and metadata to the front of the
// segment, stably and in place. No copy of the cache is made and nothing is allocated.
// The element type T is the engine's: float, __half or __nv_bfloat16 (any type the device and
// the host convert to float, and from float for a merging reducer), the same on both executors.
//
// Host-side checks (the host executor's, see ragged_plan.cuh) come back as the returned
// status before anything is enqueued. The checks of what lives on the device (metadata, NaN
// and Inf in K, V and windows: status.cuh) run there and, on failure, leave the cache
// unchanged and a report for read_status (and for the caller's failure log, when the batch
// names one: failure_log.cuh). The lengths the call leaves are
// written to batch.lengths_out / head_lengths_out on the host right away (they follow from
// the inputs: min(length, budget)); they hold if read_status is ok. When the heads of each view
// share its budget (batch.share_heads: budgets::head_adaptive's rule, shared_heads.cuh), the
// lengths follow from the scores, and the device writes them to head_lengths_device_out.
//
// What the call enqueues on `stream`: 1 memset, up to 6 small host-to-device copies of the
// batch description (views, budgets, per-head lengths and budgets, appended, windows; from pageable
// memory they are staged by the driver before the call returns, so the spans may be reused at
// once; to capture the call in a CUDA graph, keep the spans in page-locked memory and
// unchanged until the graph runs), and up to 16 kernels. The workspace may start anywhere:
// the size query includes the room to align its carve to 256 bytes.
// There is no synchronisation and no device query.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "compact.cuh"
#include "failure_log.cuh"
#include "finite_check.cuh"
#include "launch.cuh"
#include "ordered_sums.cuh"
#include "plan_kernel.cuh"
#include "reduce_kernel.cuh"
#include "reduce_rounds.cuh"
#include "ragged_plan.cuh"
#include "score_kernel.cuh"
#include "select.cuh"
#include "shared_heads.cuh"
#include "status.cuh"
#include "window_kernel.cuh"
#include "workspace_layout.cuh"

namespace kvcap::device {

namespace detail {

inline unsigned int grid_for(index_t items, int threads) {
  const index_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

/// The widest vector (16, 8, 4, 2 or 1 bytes) that divides every K and V row start.
template <class T, layout Layout>
int vector_bytes(const compress_batch<T, Layout>& batch, index_t head_dim) {
  const auto row_bytes = static_cast<std::uintptr_t>(head_dim * static_cast<index_t>(sizeof(T)));
  std::uintptr_t bits = row_bytes;
  for (const auto& view : batch.views)
    bits |= reinterpret_cast<std::uintptr_t>(view.k) | reinterpret_cast<std::uintptr_t>(view.v);
  int bytes = 16;
  while (bytes > 1 && (bits & static_cast<std::uintptr_t>(bytes - 1)) != 0) bytes /= 2;
  return bytes;
}

template <int VecBytes, int CopyBatch, class T, class Layout, class Probe>
status launch_compact(const workspace_layout<T, Layout>& ws, const plan_totals& p, cudaStream_t stream, Probe probe) {
  auto* const kernel = &compact_kernel<VecBytes, T, Layout, Probe, CopyBatch>;
  const auto smem = static_cast<std::size_t>(staging_bytes(p.tile_tokens, p.head_dim * static_cast<index_t>(sizeof(T))));
  if (smem > static_cast<std::size_t>(staging_bytes_limit))  // a larger tile than plan() picks (benchmarks): opt in
    KVCAP_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  launch(kernel, static_cast<unsigned int>(p.tiles), compact_threads, smem, stream, ws, p.tiles, p.tile_tokens, probe);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// The stages of a call, enqueued on `stream` over a carved workspace (exposed for
/// benchmarks that time them apart; `compress` runs them in this order).
template <class T, class Layout>
status enqueue_upload(const workspace_layout<T, Layout>& ws, const plan_totals& p, const compress_batch<T, Layout>& batch,
                      cudaStream_t stream) {
  KVCAP_CUDA_TRY(cudaMemsetAsync(ws.report, 0, sizeof(device_report), stream));
  if (p.active_segments == 0 && p.checked_tokens == 0 && p.window_elements == 0 && !p.share.on)
    return ok_status;  // nothing reads them
  KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.views, batch.views.data(), batch.views.size_bytes(), cudaMemcpyHostToDevice, stream));
  if (ws.budgets)
    KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.budgets, batch.budgets.data(), batch.budgets.size_bytes(), cudaMemcpyHostToDevice, stream));
  if (ws.head_lengths)
    KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.head_lengths, batch.head_lengths.data(), batch.head_lengths.size_bytes(),
                                   cudaMemcpyHostToDevice, stream));
  if (ws.head_budgets)
    KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.head_budgets, batch.head_budgets.data(), batch.head_budgets.size_bytes(),
                                   cudaMemcpyHostToDevice, stream));
  if (ws.appended)
    KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.appended, batch.appended.data(), batch.appended.size_bytes(),
                                   cudaMemcpyHostToDevice, stream));
  if (ws.windows)
    KVCAP_CUDA_TRY(cudaMemcpyAsync(ws.windows, batch.windows.data(), batch.windows.size_bytes(), cudaMemcpyHostToDevice,
                                   stream));
  return ok_status;
}

template <int VecBytes, class T, class Layout>
status launch_finite_kv(const workspace_layout<T, Layout>& ws, const plan_totals& p, cudaStream_t stream) {
  constexpr int bytes = VecBytes > static_cast<int>(sizeof(T)) ? VecBytes : static_cast<int>(sizeof(T));
  const dim3 grid(static_cast<unsigned int>((p.checked_max + finite_rows - 1) / finite_rows),
                  static_cast<unsigned int>(p.num_segments < 65535 ? p.num_segments : 65535));
  launch(finite_kv_kernel<bytes, T, Layout>, grid, finite_threads, 0, stream, ws, p.num_segments, p.num_kv_heads);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// NaN and Inf in the checked slots' K and V and, for window scorers, in the windows
/// (finite_check.cuh): a report, before anything moves.
template <class T, class Layout>
status enqueue_checks(const workspace_layout<T, Layout>& ws, const plan_totals& p, const compress_batch<T, Layout>& batch,
                      policy_needs needs, cudaStream_t stream) {
  if (p.checked_tokens > 0) {
    const status s = with_vector_bytes(vector_bytes(batch, p.head_dim),
                                       [&]<int VecBytes>() { return launch_finite_kv<VecBytes>(ws, p, stream); });
    if (!s) return s;
  }
  if (needs.window_mass && p.window_elements > 0) {
    const dim3 grid(static_cast<unsigned int>((p.window_elements + finite_window_elements - 1) / finite_window_elements),
                    static_cast<unsigned int>(p.num_views < 65535 ? p.num_views : 65535));
    launch(finite_window_kernel<T, Layout>, grid, finite_threads, 0, stream, ws, p.num_views);
    KVCAP_CUDA_LAUNCHED(stream);
  }
  return ok_status;
}

/// The window's attention mass of every token of every active segment (window scorers).
template <class T, class Layout>
status enqueue_window_mass(const workspace_layout<T, Layout>& ws, const plan_totals& p, cudaStream_t stream) {
  const index_t block_rows = window_block_rows(p.head_dim), row_blocks = (p.window_rows + block_rows - 1) / block_rows;
  const std::size_t smem = window_smem_bytes(block_rows, p.head_dim);
  launch(window_stats_kernel<T, Layout>, static_cast<unsigned int>(p.active_segments * row_blocks), window_threads, smem,
         stream, ws, row_blocks, block_rows, p.window_rows, p.head_dim, p.window_causal);
  KVCAP_CUDA_LAUNCHED(stream);
  const dim3 grid(static_cast<unsigned int>(p.active_segments),
                  static_cast<unsigned int>((p.max_length + window_key_tile - 1) / window_key_tile));
  launch(window_mass_kernel<T, Layout>, grid, window_threads, smem, stream, ws, block_rows, p.window_rows, p.head_dim,
         p.window_causal);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// Plan, then rank keys of every token of every active segment.
template <class T, class Layout, class Scorer, class Structure, class Reducer>
status enqueue_scores(const workspace_layout<T, Layout>& ws, const plan_totals& p,
                      const compress_policies<Scorer, Structure, Reducer>& policies, cudaStream_t stream) {
  constexpr policy_needs needs = needs_of<Scorer>;
  if (p.active_segments == 0) return ok_status;
  launch(plan_kernel<T, Layout>, 1, plan_threads, 0, stream, ws, p.num_views, p.num_kv_heads, p.tile_tokens);
  KVCAP_CUDA_LAUNCHED(stream);
  if constexpr (needs.window_mass) {
    if (status s = enqueue_window_mass(ws, p, stream); !s) return s;
  }
  const unsigned int token_grid = grid_for(p.tokens, token_threads);
  if constexpr (needs.mean_unit_key) {
    launch(norms_kernel<T, Layout, Scorer, Structure, Reducer>, token_grid, token_threads, 0, stream, ws, p.active_segments,
           p.tokens, p.head_dim, policies);
    KVCAP_CUDA_LAUNCHED(stream);
    const index_t dim_chunks = (p.head_dim + mean_dims - 1) / mean_dims;
    launch(mean_kernel<T, Layout, Scorer, Structure, Reducer>, static_cast<unsigned int>(p.active_segments * dim_chunks),
           mean_threads, 0, stream, ws, p.head_dim, policies);
    KVCAP_CUDA_LAUNCHED(stream);
  }
  if constexpr (needs.num_components > 0) {
    launch(components_kernel<T, Layout, Scorer, Structure, Reducer>, token_grid, token_threads, 0, stream, ws,
           p.active_segments, p.tokens, p.head_dim, policies);
    KVCAP_CUDA_LAUNCHED(stream);
    launch(stats_kernel<T, Layout, Scorer>, static_cast<unsigned int>(p.active_segments * needs.num_components),
           stats_threads, 0, stream, ws);
    KVCAP_CUDA_LAUNCHED(stream);
  }
  launch(keys_kernel<T, Layout, Scorer, Structure, Reducer>, token_grid, token_threads, 0, stream, ws, p.active_segments,
         p.tokens, p.head_dim, p.num_kv_heads, policies);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// Radix select per active segment, and the kept count before each tile.
template <class T, class Layout>
status enqueue_select(const workspace_layout<T, Layout>& ws, const plan_totals& p, cudaStream_t stream) {
  if (p.active_segments == 0) return ok_status;
  launch(select_kernel<T, Layout>, static_cast<unsigned int>(p.active_segments), select_threads, 0, stream, ws,
         p.tile_tokens, p.num_kv_heads);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// Shared budgets: the heads of each view compete for what their floors leave, and every
/// head's length is written (shared_heads.cuh). After enqueue_select.
template <class T, class Layout>
status enqueue_share(const workspace_layout<T, Layout>& ws, const plan_totals& p, const compress_batch<T, Layout>& batch,
                     cudaStream_t stream) {
  if (!p.share.on || p.num_views == 0) return ok_status;
  launch(share_kernel<T, Layout>, static_cast<unsigned int>(p.num_views < 65535 ? p.num_views : 65535), select_threads,
         0, stream, ws, p.num_views, p.active_segments, p.num_kv_heads, p.tile_tokens);
  KVCAP_CUDA_LAUNCHED(stream);
  launch(share_lengths_kernel<T, Layout>, grid_for(p.num_segments, 256), 256, 0, stream, ws, p.num_segments,
         batch.head_lengths_device_out);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// A local reducer's turns in rounds (reduce_rounds.cuh), a block per active segment.
/// `MinReady`: the fewest ready turns a round shares out before the walk takes the rest.
template <int MinReady = rounds_min_ready, class T, class Layout, class Scorer, class Structure, class Reducer>
status enqueue_reduce_rounds(const workspace_layout<T, Layout>& ws, const plan_totals& p,
                             const compress_policies<Scorer, Structure, Reducer>& policies, cudaStream_t stream) {
  static_assert(MinReady >= 1, "every round readies at least one turn: a threshold below 1 would never end");
  if (p.active_segments == 0) return ok_status;
  const std::size_t scratch = reduce_scratch_bytes<T, Reducer>(p.head_dim, rounds_warps, rounds_static_smem);
  launch(reduce_rounds_kernel<T, Layout, Scorer, Structure, Reducer, MinReady>,
         static_cast<unsigned int>(p.active_segments), rounds_threads, scratch * rounds_warps, stream, ws, scratch,
         policies);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// The reducer's turn (a merge folds dropped tokens into kept ones); nothing for evict.
/// `MinReady`: a local reducer's walk threshold (enqueue_reduce_rounds).
template <int MinReady = rounds_min_ready, class T, class Layout, class Scorer, class Structure, class Reducer>
status enqueue_reduce(const workspace_layout<T, Layout>& ws, const plan_totals& p,
                      const compress_policies<Scorer, Structure, Reducer>& policies, cudaStream_t stream) {
  if constexpr (local_reducer<Reducer, segment_reduce_context<T, Layout, Structure>>) {
    return enqueue_reduce_rounds<MinReady>(ws, p, policies, stream);
  } else if constexpr (Reducer::merges) {
    static_assert(!is_local_reducer<Reducer>, "a reducer that says `local` must offer candidates and reduce_token "
                                              "(reducers/concept.hpp: local_reducer)");
    if (p.active_segments == 0) return ok_status;
    const auto blocks = static_cast<unsigned int>((p.active_segments + reduce_warps - 1) / reduce_warps);
    const std::size_t scratch = reduce_scratch_bytes<T, Reducer>(p.head_dim);
    launch(reduce_kernel<T, Layout, Scorer, Structure, Reducer>, blocks, reduce_threads, scratch * reduce_warps, stream,
           ws, p.active_segments, scratch, policies);
    KVCAP_CUDA_LAUNCHED(stream);
  } else {
    (void)ws, (void)p, (void)policies, (void)stream;
  }
  return ok_status;
}

/// The in-place compaction, after a selection (enqueue_select resets the compaction's tile
/// flags and counter, so re-running the compaction means re-running the selection first).
/// `probe` sees each tile's progress (compact.cuh; benchmarks). `CopyBatch`: compact_kernel's.
template <int CopyBatch = copy_batch, class T, class Layout, class Probe = no_compact_probe>
status enqueue_compact(const workspace_layout<T, Layout>& ws, const plan_totals& p,
                       const compress_batch<T, Layout>& batch, cudaStream_t stream, Probe probe = {}) {
  if (p.active_segments == 0) return ok_status;
  return with_vector_bytes(vector_bytes(batch, p.head_dim),
                           [&]<int VecBytes>() { return launch_compact<VecBytes, CopyBatch>(ws, p, stream, probe); });
}

/// The call's report into the caller's failure log, when it names one (failure_log.cuh).
template <class T, class Layout>
status enqueue_failure_log(const workspace_layout<T, Layout>& ws, const compress_batch<T, Layout>& batch,
                           cudaStream_t stream) {
  if (batch.failure_log == nullptr) return ok_status;
  launch(log_failure_kernel<>, 1, 1, 0, stream, static_cast<const device_report*>(ws.report), batch.failure_log);
  KVCAP_CUDA_LAUNCHED(stream);
  return ok_status;
}

/// The launch choices that change when work is done, never what is written: tests run other
/// values through compress_with and compare with the host, benchmarks time them.
struct tuning {
  int rounds_min_ready = detail::rounds_min_ready;  ///< reduce_rounds_kernel's walk threshold
  int copy_batch = detail::copy_batch;              ///< compact_kernel's loads in flight a thread, per K and V
  friend constexpr bool operator==(const tuning&, const tuning&) = default;
};

/// compress (below), with the launch choices as a parameter.
template <tuning Tune, class T, class Layout, class Scorer, class Structure, class Reducer>
status compress_with(void* d_temp_storage, std::size_t& temp_storage_bytes, const compress_batch<T, Layout>& batch,
                     const compress_policies<Scorer, Structure, Reducer>& policies, cudaStream_t stream) {
  plan_totals p;
  if (const status s = plan(batch, p, needs_of<Scorer, Reducer>); !s) return s;
  std::size_t need = 0;
  if (const status s = workspace_bytes<T, Layout>(p, needs_of<Scorer, Reducer>, need); !s) return s;
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = need;
    return ok_status;
  }
  if (temp_storage_bytes < need)
    return status::failure(errc::workspace_too_small, "temp_storage_bytes", -1, bytes_value(need),
                           bytes_value(temp_storage_bytes));
  workspace_carver w(workspace_base(d_temp_storage));
  const auto ws = carve<T, Layout>(w, p, needs_of<Scorer, Reducer>);
  if (status s = enqueue_upload(ws, p, batch, stream); !s) return s;
  if (status s = enqueue_checks(ws, p, batch, needs_of<Scorer, Reducer>, stream); !s) return s;
  if (status s = enqueue_scores(ws, p, policies, stream); !s) return s;
  if (status s = enqueue_select(ws, p, stream); !s) return s;
  if (status s = enqueue_share(ws, p, batch, stream); !s) return s;
  if (status s = enqueue_reduce<Tune.rounds_min_ready>(ws, p, policies, stream); !s) return s;
  if (status s = enqueue_compact<Tune.copy_batch>(ws, p, batch, stream); !s) return s;
  if (status s = enqueue_failure_log(ws, batch, stream); !s) return s;
  write_lengths(batch, p);
  return ok_status;
}

}  // namespace detail

/// Compresses every segment of `batch` to its budget (see the file comment). With
/// d_temp_storage == nullptr only writes the workspace bytes this batch needs.
template <class T, layout Layout, any_scorer Scorer, structure Structure, reducer Reducer>
[[nodiscard]] status compress(void* d_temp_storage, std::size_t& temp_storage_bytes, const compress_batch<T, Layout>& batch,
                              const compress_policies<Scorer, Structure, Reducer>& policies, cudaStream_t stream = 0) {
  return detail::compress_with<detail::tuning{}>(d_temp_storage, temp_storage_bytes, batch, policies, stream);
}

/// The same with default policies (a scorer without parameters, plain text structure).
template <any_scorer Scorer, class T, layout Layout>
[[nodiscard]] status compress(void* d_temp_storage, std::size_t& temp_storage_bytes, const compress_batch<T, Layout>& batch,
                              cudaStream_t stream = 0) {
  return compress(d_temp_storage, temp_storage_bytes, batch, compress_policies<Scorer>{}, stream);
}

namespace detail {
inline status read_report(const device_report* d_report, cudaStream_t stream) {
  device_report report;
  KVCAP_CUDA_TRY(cudaMemcpyAsync(&report, d_report, sizeof report, cudaMemcpyDeviceToHost, stream));
  KVCAP_CUDA_TRY(cudaStreamSynchronize(stream));
  return to_status(report);
}
}  // namespace detail

/// The device-side checks of the last call that used `d_temp_storage` (waits for `stream`).
/// ok when they passed, or the failure (that call left the cache unchanged).
[[nodiscard]] inline status read_status(const void* d_temp_storage, cudaStream_t stream = 0) {
  return detail::read_report(static_cast<const device_report*>(workspace_base(d_temp_storage)), stream);
}

/// The first device-side failure of the calls that named `d_log` as their failure_log since
/// it was cleared (waits for `stream`): ok when none failed (failure_log.cuh).
[[nodiscard]] inline status read_failure_log(const device_report* d_log, cudaStream_t stream = 0) {
  return detail::read_report(d_log, stream);
}

}  // namespace kvcap::device
