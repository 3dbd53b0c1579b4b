#pragma once
// bench/bench_timing.hpp — timing on two clocks, shared by kvcap's host benchmarks.
//
// Each phase is timed on wall time (steady_clock: what the engine waits for) and on this
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID: blind to time slices other processes take on
// a shared machine). Ratios are reported on both.

#include <chrono>
#include <ctime>

namespace kvcap_bench {

struct lap {
  double wall = 0, cpu = 0;
  lap& operator+=(const lap& o) { return wall += o.wall, cpu += o.cpu, *this; }
};

inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct stopwatch {
  std::chrono::steady_clock::time_point wall0 = std::chrono::steady_clock::now();
  double cpu0 = thread_cpu_seconds();
  lap elapsed() const {
    return {std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count(),
            thread_cpu_seconds() - cpu0};
  }
};

}  // namespace kvcap_bench
