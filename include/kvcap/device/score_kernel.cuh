#pragma once
// kvcap/device/score_kernel.cuh — scoring on the device: the SAME scorer policy the host
// runs, called per (segment, token) through segment_score_context.
//
//   window kernels     (see window_kernel.cuh) the window's attention mass, window scorers
//   norms_kernel       (token)              |k|, when the scorer needs the mean unit key
//   mean_kernel        (segment, dims)      mean of k/|k| in slot order (ordered_sums.cuh)
//   components_kernel  (token)              composite scorers: every component
//   stats_kernel       (segment, component) mean and 1/std in double, in slot order (idem)
//   keys_kernel        (token)              rank key (and the key heads share a budget by);
//                                           checks logical indices increase and the metadata
//                                           against the structure (Structure::check)
//
// Shared inputs are summed in the host executor's order (a lane per dim, or a thread per
// component, adds the staged slots in slot order: ordered_sums.cuh), so they are
// bit-identical to the host's; the window mass alone agrees to float rounding (see
// window_kernel.cuh). Device translation units must be compiled with --fmad=false (nvcc
// contracts a*b+c into an FMA by default, which rounds differently from the host) and
// --expt-relaxed-constexpr (structure models are constexpr host functions).

#include <cuda/atomic>

#include "plan_kernel.cuh"
#include "score_context.cuh"
#include "status.cuh"

namespace kvcap::device::detail {

inline constexpr int token_threads = 256;

/// First failure wins: writes the report only if none was written yet (device_report says
/// what `at`, `expected` and `received` hold for each code).
__device__ inline void report_failure(device_report* report, errc code, index_t at, index_t expected, index_t received,
                                      finite_input input = {}) {
  if (atomicCAS(&report->code, 0, static_cast<std::int32_t>(code)) == 0) {
    report->input = static_cast<std::int32_t>(input);
    report->at = at;
    report->expected = expected;
    report->received = received;
  }
}

/// (active segment, slot, global token) of token `g`, and the segment's score context.
template <class T, class Layout, class Structure>
struct token_site {
  index_t a, tok;
  plan_segment seg;
  segment_score_context<T, Layout, Structure> ctx;
};

template <class T, class Layout, class Structure>
__device__ inline token_site<T, Layout, Structure> site_of(const workspace_layout<T, Layout>& ws, index_t active,
                                                            index_t g, const Structure* structure, index_t head_dim) {
  const index_t a = segment_of(ws.token_indptr, active, g);
  const plan_segment seg = ws.segments[a];
  const float* mean = ws.mean_keys != nullptr ? ws.mean_keys + a * head_dim : nullptr;
  const float* mass = ws.window_mass != nullptr ? ws.window_mass + ws.token_indptr[a] : nullptr;
  return {a, g - ws.token_indptr[a], seg, {{ws.views + seg.view, structure, seg.head, seg.length}, mean, mass}};
}

template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(token_threads)
    norms_kernel(workspace_layout<T, Layout> ws, index_t active, index_t tokens, index_t head_dim,
                 compress_policies<Scorer, Structure, Reducer> policies) {
  for (index_t g = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; g < tokens;
       g += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const auto s = site_of(ws, active, g, &policies.structure, head_dim);
    ws.norms[g] = key_norm_at(s.ctx, s.tok);
  }
}

template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(token_threads)
    components_kernel(workspace_layout<T, Layout> ws, index_t active, index_t tokens, index_t head_dim,
                      compress_policies<Scorer, Structure, Reducer> policies) {
  constexpr index_t num = num_components_v<Scorer>;
  for (index_t g = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; g < tokens;
       g += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const auto s = site_of(ws, active, g, &policies.structure, head_dim);
    float* comps = ws.components + num * ws.token_indptr[s.a];
    for (index_t c = 0; c < num; ++c) comps[c * s.seg.length + s.tok] = policies.scorer.component(s.ctx, s.tok, c);
  }
}

template <class T, class Layout, class Scorer, class Structure, class Reducer>
__global__ void __launch_bounds__(token_threads)
    keys_kernel(workspace_layout<T, Layout> ws, index_t active, index_t tokens, index_t head_dim, index_t num_kv_heads,
                compress_policies<Scorer, Structure, Reducer> policies) {
  constexpr index_t num = num_components_v<Scorer>;
  for (index_t g = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; g < tokens;
       g += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const auto s = site_of(ws, active, g, &policies.structure, head_dim);
    const index_t segment = s.seg.view * num_kv_heads + s.seg.head;
    if (s.tok > 0) {
      const std::int64_t before = s.ctx.meta(s.tok - 1).index, here = s.ctx.meta(s.tok).index;
      if (here <= before) report_failure(ws.report, errc::meta_out_of_order, segment, before + 1, here);
    }
    if (!policies.structure.check(s.ctx.meta(s.tok)).ok)
      report_failure(ws.report, errc::meta_out_of_structure, segment, 0, s.tok);
    const float* comps = num > 0 ? ws.components + num * ws.token_indptr[s.a] : nullptr;
    const float* stats = num > 0 ? ws.component_stats + 2 * num * s.a : nullptr;
    const std::uint64_t key = rank_key_at(policies.scorer, s.ctx, s.tok, comps, stats);
    ws.keys[g] = key;
    if (ws.shared_keys != nullptr) ws.shared_keys[g] = encode_shared_rank(key, s.ctx.meta(s.tok).index, s.seg.head);
  }
}

}  // namespace kvcap::device::detail
