#pragma once
// kvcap/device/failure_log.cuh — the first device-side failure of a run of calls, for an
// engine that does not wait on every call.
//
// Each call resets its own report (at the start of its workspace), so read_status sees the
// last call only, and an engine that reuses one workspace for every layer and step would
// have to wait after each call to see them all. Instead it names a `device_report` of its
// own in device memory (compress_batch::failure_log), cleared once with cudaMemsetAsync. After
// its checks, a call copies its report there if it failed and the log is still clear (the
// first failure wins; kvcap never clears the log). The engine reads it when it waits anyway
// (read_failure_log), at the end of a step or of the prefill. A call whose report is set left
// its caches unchanged; the calls after it ran as usual.
//
//   log_failure_kernel  (1 thread)  report → log, if the report is set and the log is clear
//
// One extra launch per call that names a log; none otherwise. Calls on several streams may
// share a log: the claim is atomic, and the fields are written by the claiming call. Read it
// after every call that may write it has finished.

#include "launch.cuh"
#include "status.cuh"

namespace kvcap::device::detail {

/// (A template, as every kernel in these headers is: each translation unit may then hold it.)
template <class Report = device_report>
__global__ void __launch_bounds__(1) log_failure_kernel(const Report* report, Report* log) {
  if (report->code == 0) return;
  if (atomicCAS(&log->code, 0, report->code) == 0) {
    log->input = report->input;
    log->at = report->at;
    log->expected = report->expected;
    log->received = report->received;
  }
}

}  // namespace kvcap::device::detail
