#pragma once
// kvcap/device/status.cuh — how the device path reports errors: status values, never
// exceptions.
//
// Every entry point validates its arguments on the host before it enqueues anything, with
// the checks the host executor makes, and returns a `status` naming the argument, the
// offending view or segment, the expected and the received value. A call that returns an
// error other than `cuda_error` has enqueued nothing: the cache is unchanged. A `cuda_error`
// carries the cudaError_t of the failing runtime call and the file and line of the call.
//
// Four checks need what lives on the device: more protected tokens resident than the budget
// (the host executor's compress_to check), logical indices that do not increase along a head,
// metadata that disagrees with the declared structure and NaN or Inf in K, V (the host
// executor's append checks) or an observation window (its compress check). The device finds
// them before anything moves, writes a `device_report` into the workspace and then moves
// nothing: the cache is unchanged. The host learns of it with `read_status` (which waits for
// the stream) or by copying the report itself; the first failure of a run of calls also goes
// to the caller's failure log, when the batch names one (failure_log.cuh).
//
// This header is plain C++ (any C++20 compiler); the CUDA helper macros appear only when
// compiled by a CUDA compiler, or with the CPU SIMT emulator (launch.cuh).

#include <cstddef>
#include <cstdint>
#include <limits>

#include "../core/config.hpp"

namespace kvcap::device {

enum class errc : std::int32_t {
  ok = 0,
  invalid_argument,     ///< a null pointer, a wrong span size, a negative budget, a non-positive extent
  shape_mismatch,       ///< heads or dims differ between views
  capacity_exceeded,    ///< a length above its capacity, or a capacity beyond 2^31 slots
  workspace_too_small,  ///< temp_storage_bytes is below what the size query returned
  cuda_error,           ///< a CUDA runtime call failed (see `status::cuda`)
  // Found on the device, from the metadata (reported through device_report):
  budget_below_protected,  ///< a segment holds more protected tokens than its budget
  meta_out_of_order,       ///< logical indices do not strictly increase along a head
  not_finite,              ///< NaN or Inf in K, V (of the checked slots) or a window
  meta_out_of_structure,   ///< a token's metadata disagrees with the structure (Structure::check)
};

constexpr const char* to_string(errc e) {
  switch (e) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::shape_mismatch: return "shape mismatch";
    case errc::capacity_exceeded: return "capacity exceeded";
    case errc::workspace_too_small: return "workspace too small";
    case errc::cuda_error: return "CUDA error";
    case errc::budget_below_protected: return "budget below the protected tokens";
    case errc::meta_out_of_order: return "metadata out of order";
    case errc::not_finite: return "not finite";
    case errc::meta_out_of_structure: return "metadata out of the structure";
  }
  return "unknown";
}

struct [[nodiscard]] status {
  errc code = errc::ok;
  const char* argument = "";  ///< the offending argument (or the failing CUDA call)
  index_t at = -1;            ///< the offending view or segment, -1 if none
  index_t expected = 0;       ///< the bound it had to respect (see `argument`)
  index_t received = 0;       ///< what it was
  int cuda = 0;               ///< the cudaError_t when code == cuda_error
  const char* file = "";      ///< where a CUDA call failed
  int line = 0;

  constexpr bool ok() const { return code == errc::ok; }
  constexpr explicit operator bool() const { return ok(); }

  static constexpr status failure(errc code, const char* argument, index_t at, index_t expected, index_t received) {
    status s;
    s.code = code, s.argument = argument, s.at = at, s.expected = expected, s.received = received;
    return s;
  }
};

inline constexpr status ok_status{};

/// A byte count as a status's expected or received value: past index_t, index_t's largest.
constexpr index_t bytes_value(std::size_t bytes) {
  constexpr auto most = static_cast<std::size_t>(std::numeric_limits<index_t>::max());
  return static_cast<index_t>(bytes < most ? bytes : most);
}

/// Which input a not_finite report is about.
enum class finite_input : std::int32_t { k = 0, v = 1, window = 2 };

/// What the device writes when a check fails (the first failure wins); zero when all is well.
/// It sits at the start of the workspace.
///   budget_below_protected  at: segment (view · kv_heads + head); expected: its protected
///                           tokens; received: its budget
///   meta_out_of_order       at: segment; expected: above the previous slot's index; received:
///                           the index found
///   not_finite              input: K, V or window; at: segment (K, V) or view (window);
///                           received: the slot (K, V) or the window's query
///   meta_out_of_structure   at: segment; received: the slot (Structure::check names the field)
struct device_report {
  std::int32_t code = 0;   ///< an errc
  std::int32_t input = 0;  ///< not_finite: a finite_input
  index_t at = -1;
  index_t expected = 0, received = 0;
};

/// The status a report stands for.
constexpr status to_status(const device_report& r) {
  const auto code = static_cast<errc>(r.code);
  if (code == errc::ok) return ok_status;
  const char* argument = "meta[].index (strictly increasing along each head)";
  if (code == errc::budget_below_protected) argument = "budgets[] (protected tokens resident)";
  if (code == errc::meta_out_of_structure)
    argument = "meta[] (as the structure declares it: Structure::check; at: segment, received: slot)";
  if (code == errc::not_finite) {
    const auto input = static_cast<finite_input>(r.input);
    argument = input == finite_input::k   ? "views[].k (finite values; at: segment, received: slot)"
               : input == finite_input::v ? "views[].v (finite values; at: segment, received: slot)"
                                          : "windows[] (finite values; at: view, received: query)";
  }
  return status::failure(code, argument, r.at, r.expected, r.received);
}

}  // namespace kvcap::device

#if defined(__CUDACC__) || defined(KVCAP_SIMT_EMULATOR)
#include <cuda_runtime_api.h>

namespace kvcap::device::detail {
inline status cuda_failure(cudaError_t e, const char* call, const char* file, int line) {
  status s;
  s.code = errc::cuda_error, s.argument = call, s.cuda = static_cast<int>(e), s.file = file, s.line = line;
  return s;
}
}  // namespace kvcap::device::detail

/// Returns a cuda_error status from the enclosing function when `call` fails.
#define KVCAP_CUDA_TRY(call)                                                              \
  do {                                                                                    \
    const cudaError_t kvcap_cuda_try_error_ = (call);                                     \
    if (kvcap_cuda_try_error_ != cudaSuccess)                                             \
      return ::kvcap::device::detail::cuda_failure(kvcap_cuda_try_error_, #call, __FILE__, __LINE__); \
  } while (0)

/// After a kernel launch: a launch error becomes a cuda_error status. With KVCAP_DEBUG_SYNC
/// defined, also waits for the kernel so that execution errors name the launch that failed.
#if defined(KVCAP_DEBUG_SYNC)
#define KVCAP_CUDA_LAUNCHED(stream)               \
  do {                                            \
    KVCAP_CUDA_TRY(cudaPeekAtLastError());        \
    KVCAP_CUDA_TRY(cudaStreamSynchronize(stream)); \
  } while (0)
#else
#define KVCAP_CUDA_LAUNCHED(stream) KVCAP_CUDA_TRY(cudaPeekAtLastError())
#endif
#endif
