#pragma once
// tests/device/simt/simt.hpp — runs kvcap's CUDA kernels on the CPU, so that a machine without
// a GPU (CI) still executes the kernels' source against the host executor.
//
// Include it first in a translation unit compiled by a host compiler (g++ or clang++), before
// kvcap's device headers: it defines KVCAP_SIMT_EMULATOR, which makes device/launch.cuh hand
// kernel launches and dynamic shared memory to this emulator, and it gives the CUDA keywords,
// built-in variables and intrinsics kvcap's kernels use a host meaning. runtime.cpp supplies
// the CUDA runtime calls (memory is host memory; every call completes before it returns), and
// include/cub/block/block_scan.cuh stands in for CUB's block scan.
//
// How a launch runs: its blocks, in a shuffled order, are taken by `resident` workers (OS
// threads; 1 to 4, drawn for each launch, or KVCAP_SIMT_RESIDENT), each running one block at a
// time, as an SM holds several blocks at once. Within a block, every CUDA thread is a fiber
// (ucontext) with its own stack, and the fibers run in a shuffled order until each reaches a
// barrier (__syncthreads), a warp collective (__syncwarp, __shfl_*_sync, __ballot_sync), a
// spin-wait's pause (__nanosleep) or its end; then the barrier or collective whose threads have
// all arrived is released, and the next round starts. Only one worker runs at a time: it holds
// a baton, and hands it to a worker drawn at random after a barrier, after a round with a
// spin-wait, and after a fiber's turn with probability 1/32. So the resident blocks interleave
// at those points, a block's static __shared__ variables are its worker's (thread_local), the
// emulator's state needs no lock, and a launch is as reproducible as its seed (KVCAP_SIMT_SEED).
//
// So a kernel that reads shared memory before the barrier that publishes it, or reuses a CUB
// scan's storage without one, gets another thread's stale data in some order and fails its
// parity test; and a block that writes where another resident block has yet to read, for want
// of waiting on its flag, corrupts that block's input in some order. It fails loudly, naming
// the block and thread, where a GPU would be undefined: threads of a block waiting at
// different barriers (deadlock), lanes of a warp in different collectives, a partial-warp mask,
// a thread that spins on a block that is not resident, dynamic shared memory beyond what the
// launch may use. Dynamic shared memory starts each block filled with 0xff bytes (NaN as
// float), as uninitialised as on a GPU.
//
// What it does not check: the GPU's memory model (one fiber runs at a time and switches only at
// the points above, so atomics and fences are trivially ordered), speed, register pressure, or
// code under __CUDA_ARCH__ (that takes its host branch here). compute-sanitizer on a GPU
// (tools/device/device_checks.sh) remains the check for races and memory errors there; the
// order of the compaction's flags between blocks is read from its machine code
// (tools/device/sass_ordering.sh).

#define KVCAP_SIMT_EMULATOR 1

// The CUDA headers first, while their keywords still have the host compiler's meaning.
#include <cuda_runtime_api.h>  // dim3, uint3, uint4, cudaError_t, cudaStream_t (host types)
#include <cuda/atomic>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <semaphore>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- CUDA keywords as host C++ -----------------------------------------------------------
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __launch_bounds__
#define __launch_bounds__(...)
// A block's static shared memory: one instance per kernel instantiation and worker, which runs
// one block at a time. (extern __shared__ goes through launch.cuh.)
#undef __shared__
#define __shared__ static thread_local

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace kvcap::simt {

// AddressSanitizer follows the switches between fibers' stacks (the sanitize preset builds this).
inline void start_switch([[maybe_unused]] void** fake_stack, [[maybe_unused]] const void* bottom,
                         [[maybe_unused]] std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#endif
}
inline void finish_switch([[maybe_unused]] void* fake_stack, [[maybe_unused]] const void** bottom,
                          [[maybe_unused]] std::size_t* size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
#endif
}

enum class wait_state { running, block_barrier, warp_collective, exited };

struct fiber {
  ucontext_t context{};
  uint3 thread{};
  int warp = 0, lane = 0;
  wait_state state = wait_state::running;
  const char* collective = nullptr;  ///< the warp collective it waits in
  unsigned collectives = 0;          ///< warp collectives it has entered
  unsigned long spins = 0;           ///< __nanosleep calls
  void* stack = nullptr;
  void* fake_stack = nullptr;        ///< AddressSanitizer's, while switched away
};

/// A warp's collectives alternate between two exchanges: lanes write one while slower lanes
/// may still read the other.
struct warp_exchange {
  std::uint32_t word[2][32];
  std::uint32_t arrived[2];  ///< lanes that took part
};

struct block_run {
  dim3 grid{}, dim{}, index{};
  std::vector<fiber> fibers;
  fiber* current = nullptr;
  ucontext_t scheduler{};
  const void* scheduler_stack = nullptr;  ///< bottom and size, for AddressSanitizer
  std::size_t scheduler_stack_size = 0;
  int live = 0;
  std::vector<warp_exchange> warps;
  unsigned char* shared = nullptr;  ///< dynamic shared memory
  const std::function<void()>* body = nullptr;
  bool spun = false;                  ///< a fiber paused in a spin-wait this round
  std::function<void()> pass_baton;   ///< lets the other resident blocks run (empty: none)
};

/// The block this thread (a worker, or the launching thread) runs.
inline block_run*& running_block() {
  static thread_local block_run* b = nullptr;
  return b;
}

[[noreturn]] inline void fail(const char* what) {
  const block_run* b = running_block();
  if (b != nullptr && b->current != nullptr)
    std::fprintf(stderr, "kvcap SIMT emulator: %s (block %u,%u,%u, thread %u,%u,%u)\n", what, b->index.x, b->index.y,
                 b->index.z, b->current->thread.x, b->current->thread.y, b->current->thread.z);
  else
    std::fprintf(stderr, "kvcap SIMT emulator: %s\n", what);
  std::abort();
}

inline fiber& this_fiber() {
  block_run* b = running_block();
  if (b == nullptr || b->current == nullptr) fail("a device function called outside a kernel");
  return *b->current;
}

/// Back to the scheduler until it resumes this fiber.
inline void suspend(wait_state s) {
  block_run& b = *running_block();
  fiber& f = *b.current;
  f.state = s;
  start_switch(&f.fake_stack, b.scheduler_stack, b.scheduler_stack_size);
  swapcontext(&f.context, &b.scheduler);
  finish_switch(f.fake_stack, &b.scheduler_stack, &b.scheduler_stack_size);
}

inline void sync_block() { suspend(wait_state::block_barrier); }

/// Enters a warp collective with this lane's word; returns the exchange once every lane of
/// the warp that has not exited has entered the same collective.
inline const warp_exchange& warp_collective(const char* op, std::uint32_t mask, std::uint32_t word, unsigned& phase) {
  if (mask != 0xffffffffu) fail("a warp collective with a partial mask (kvcap's kernels use whole warps)");
  block_run& b = *running_block();
  fiber& f = *b.current;
  phase = f.collectives++ & 1u;
  b.warps[static_cast<std::size_t>(f.warp)].word[phase][f.lane] = word;
  f.collective = op;
  suspend(wait_state::warp_collective);
  return b.warps[static_cast<std::size_t>(f.warp)];
}

/// Fixed-size stacks with a guard page below each, reused across blocks and launches.
class stack_pool {
 public:
  static constexpr std::size_t stack_bytes = std::size_t{256} << 10;
  void* get(std::size_t i) {
    while (stacks_.size() <= i) {
      const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
      void* p = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) fail("mmap of a fiber stack failed");
      mprotect(p, page, PROT_NONE);
      stacks_.push_back(static_cast<unsigned char*>(p) + page);
    }
    return stacks_[i];
  }

 private:
  std::vector<void*> stacks_;
};

inline void fiber_entry() {
  block_run& b = *running_block();
  finish_switch(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);
  (*b.body)();
  fiber& f = *b.current;
  f.state = wait_state::exited;
  --b.live;
  start_switch(nullptr, b.scheduler_stack, b.scheduler_stack_size);  // this stack is done with
  swapcontext(&f.context, &b.scheduler);                             // never resumed
}

/// Releases one warp collective whose lanes have all arrived; false if none has.
inline bool release_warp(block_run& b, int warp) {
  const int first = warp * 32, last = std::min<int>(first + 32, static_cast<int>(b.fibers.size()));
  const fiber* leader = nullptr;
  for (int i = first; i < last; ++i) {
    const fiber& f = b.fibers[static_cast<std::size_t>(i)];
    if (f.state == wait_state::exited) continue;
    if (f.state != wait_state::warp_collective) return false;
    if (leader == nullptr) leader = &f;
  }
  if (leader == nullptr) return false;
  std::uint32_t arrived = 0;
  for (int i = first; i < last; ++i) {
    fiber& f = b.fibers[static_cast<std::size_t>(i)];
    if (f.state == wait_state::exited) continue;
    if (std::strcmp(f.collective, leader->collective) != 0 || f.collectives != leader->collectives) {
      b.current = &f;
      fail("lanes of a warp in different collectives (divergent __syncwarp/__shfl_sync/__ballot_sync)");
    }
    arrived |= 1u << f.lane;
  }
  b.warps[static_cast<std::size_t>(warp)].arrived[(leader->collectives - 1) & 1u] = arrived;
  for (int i = first; i < last; ++i)
    if (b.fibers[static_cast<std::size_t>(i)].state == wait_state::warp_collective)
      b.fibers[static_cast<std::size_t>(i)].state = wait_state::running;
  return true;
}

/// Makes `f` start at the kernel's entry on `stack`.
[[gnu::noinline]] inline void start_fiber(fiber& f, void* stack) {
  f.state = wait_state::running, f.collective = nullptr, f.collectives = 0, f.spins = 0;
  getcontext(&f.context);
  f.stack = f.context.uc_stack.ss_sp = stack;
  f.context.uc_stack.ss_size = stack_pool::stack_bytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, fiber_entry, 0);
}

/// Runs one block to its end (see the file comment), handing the baton on where it says.
inline void run_block(block_run& b, stack_pool& stacks, std::mt19937& rng) {
  const int n = static_cast<int>(b.fibers.size());
  for (int i = 0; i < n; ++i) start_fiber(b.fibers[static_cast<std::size_t>(i)], stacks.get(static_cast<std::size_t>(i)));
  b.live = n;
  const auto maybe_pass = [&](bool always) {
    if (b.pass_baton && (always || rng() % 32 == 0)) b.pass_baton();
  };
  std::vector<int> order;
  while (b.live > 0) {
    order.clear();
    for (int i = 0; i < n; ++i)
      if (b.fibers[static_cast<std::size_t>(i)].state == wait_state::running) order.push_back(i);
    if (!order.empty()) {
      std::shuffle(order.begin(), order.end(), rng);
      b.spun = false;
      for (const int i : order) {
        b.current = &b.fibers[static_cast<std::size_t>(i)];
        if (b.current->state != wait_state::running) continue;
        void* fake_stack = nullptr;
        start_switch(&fake_stack, b.current->stack, stack_pool::stack_bytes);
        swapcontext(&b.scheduler, &b.current->context);
        finish_switch(fake_stack, nullptr, nullptr);
        b.current = nullptr;
        maybe_pass(false);
      }
      if (b.spun) maybe_pass(true);  // the block waits on another: let it run
      continue;
    }
    bool released = false;
    for (int w = 0; w * 32 < n; ++w) released = release_warp(b, w) || released;
    if (released) continue;
    int at_barrier = 0;
    for (const fiber& f : b.fibers) at_barrier += f.state == wait_state::block_barrier ? 1 : 0;
    if (at_barrier != b.live) {
      for (fiber& f : b.fibers)
        if (f.state == wait_state::block_barrier) b.current = &f;
      fail("deadlock: threads of a block wait at different barriers (__syncthreads in divergent code, or a warp "
           "collective some lanes never reach)");
    }
    for (fiber& f : b.fibers)
      if (f.state == wait_state::block_barrier) f.state = wait_state::running;
    maybe_pass(true);
  }
}

/// The largest dynamic shared memory a kernel may take: 48 KiB, or what
/// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) opted it in to.
inline std::map<const void*, int>& opted_in_shared() {
  static std::map<const void*, int> m;
  return m;
}

/// One launch: its geometry and its blocks in the order they are taken. Only the baton's
/// holder touches it.
struct grid_run {
  dim3 grid{}, dim{};
  std::size_t smem = 0;
  const std::function<void()>* body = nullptr;
  std::vector<std::size_t> blocks;
  std::size_t taken = 0;  ///< blocks a worker has taken
  std::mt19937 rng;
};

/// Takes blocks of `g` and runs each to its end, until none is left.
inline void run_blocks(grid_run& g, stack_pool& stacks, std::function<void()> pass_baton) {
  const std::size_t threads = std::size_t{g.dim.x} * g.dim.y * g.dim.z;
  std::vector<uint4> shared((g.smem + sizeof(uint4) - 1) / sizeof(uint4));  // exact: AddressSanitizer sees overruns
  block_run b;
  b.grid = g.grid, b.dim = g.dim, b.body = g.body, b.shared = reinterpret_cast<unsigned char*>(shared.data());
  b.pass_baton = std::move(pass_baton);
  b.fibers.resize(threads);
  b.warps.resize((threads + 31) / 32);
  for (std::size_t i = 0; i < threads; ++i) {
    fiber& f = b.fibers[i];
    f.thread = {static_cast<unsigned>(i % g.dim.x), static_cast<unsigned>(i / g.dim.x % g.dim.y),
                static_cast<unsigned>(i / (std::size_t{g.dim.x} * g.dim.y))};
    f.warp = static_cast<int>(i / 32), f.lane = static_cast<int>(i % 32);
  }
  running_block() = &b;
  while (g.taken < g.blocks.size()) {
    const std::size_t i = g.blocks[g.taken++];
    b.index = {static_cast<unsigned>(i % g.grid.x), static_cast<unsigned>(i / g.grid.x % g.grid.y),
               static_cast<unsigned>(i / (std::size_t{g.grid.x} * g.grid.y))};
    if (!shared.empty()) std::memset(shared.data(), 0xff, shared.size() * sizeof(uint4));
    run_block(b, stacks, g.rng);
  }
  running_block() = nullptr;
}

/// The workers that run a launch's blocks side by side, one at a time (see the file comment):
/// a worker runs only while it holds the baton, and hands it to a worker drawn at random. A
/// hand-over is a semaphore's release and acquire, which orders the emulator's reads and writes
/// from one holder to the next.
class resident_workers {
 public:
  static constexpr int most = 4;

  static resident_workers& instance() {
    static resident_workers w;
    return w;
  }

  /// Runs every block of `g` on `resident` workers; returns when all have finished.
  void run(grid_run& g, int resident) {
    grid_ = &g;
    active_.clear();
    for (int w = 0; w < resident; ++w) active_.push_back(w);
    hand_to(active_[g.rng() % active_.size()]);
    finished_.acquire();
    grid_ = nullptr;
  }

  ~resident_workers() {
    stop_ = true;
    for (int w = 0; w < most; ++w) baton_[w].release();
    for (std::thread& t : threads_) t.join();
  }

 private:
  resident_workers() {
    for (int w = 0; w < most; ++w) threads_.emplace_back([this, w] { work(w); });
  }

  void hand_to(int worker) { baton_[worker].release(); }

  void work(int me) {
    stack_pool stacks;
    for (;;) {
      baton_[me].acquire();
      if (stop_) return;
      grid_run& g = *grid_;
      run_blocks(g, stacks, [this, me, &g] { pass(me, g); });
      active_.erase(std::find(active_.begin(), active_.end(), me));  // no block left to take
      if (active_.empty())
        finished_.release();
      else
        hand_to(active_[g.rng() % active_.size()]);
    }
  }

  /// Hands the baton to a resident worker drawn at random (perhaps this one); returns when
  /// this worker holds it again.
  void pass(int me, grid_run& g) {
    const int next = active_[g.rng() % active_.size()];
    if (next == me) return;
    hand_to(next);
    baton_[me].acquire();
  }

  std::binary_semaphore baton_[most]{std::binary_semaphore(0), std::binary_semaphore(0), std::binary_semaphore(0),
                                     std::binary_semaphore(0)};
  std::binary_semaphore finished_{0};  ///< the last worker of a launch is done
  std::vector<int> active_;            ///< the workers still running the launch
  grid_run* grid_ = nullptr;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

/// Blocks resident at once in every launch, 1 to resident_workers::most; 0 (the default
/// unless KVCAP_SIMT_RESIDENT says otherwise): drawn for each launch.
inline int& resident_setting() {
  static int r = [] {
    const char* s = std::getenv("KVCAP_SIMT_RESIDENT");
    const int v = s != nullptr ? std::atoi(s) : 0;
    return v >= 1 && v <= resident_workers::most ? v : 0;
  }();
  return r;
}

inline void run_grid(const void* kernel, dim3 grid, dim3 dim, std::size_t smem, const std::function<void()>& body) {
  static stack_pool stacks;
  static unsigned long launches = 0;
  static const unsigned long seed = [] {
    const char* s = std::getenv("KVCAP_SIMT_SEED");
    return s != nullptr ? std::strtoul(s, nullptr, 10) : 1ul;
  }();
  if (running_block() != nullptr) fail("a kernel launched from a kernel");
  const std::size_t threads = std::size_t{dim.x} * dim.y * dim.z;
  if (threads == 0 || threads > 1024) fail("a launch with 0 or more than 1024 threads a block");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) fail("a launch with a bad grid");
  const auto opt_in = opted_in_shared().find(kernel);
  const std::size_t limit = opt_in != opted_in_shared().end() ? static_cast<std::size_t>(opt_in->second) : 48u << 10;
  if (smem > limit) fail("a launch with more dynamic shared memory than the kernel may use (48 KiB unless opted in)");

  grid_run g;
  g.grid = grid, g.dim = dim, g.smem = smem, g.body = &body;
  g.rng.seed(static_cast<std::mt19937::result_type>(seed * 1000003ul + launches++));
  g.blocks.resize(std::size_t{grid.x} * grid.y * grid.z);
  for (std::size_t i = 0; i < g.blocks.size(); ++i) g.blocks[i] = i;
  std::shuffle(g.blocks.begin(), g.blocks.end(), g.rng);
  const int drawn = resident_setting() != 0 ? resident_setting() : 1 + static_cast<int>(g.rng() % resident_workers::most);
  const int resident = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(drawn), g.blocks.size()));
  if (resident == 1)
    run_blocks(g, stacks, {});  // on this thread, one block after another
  else
    resident_workers::instance().run(g, resident);
}

/// kernel(args...) on grid × block threads, converting the arguments as a launch does.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t /*stream*/, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch passes every parameter");
  const std::tuple<std::remove_cvref_t<Params>...> params(std::forward<Args>(args)...);
  const std::function<void()> body = [&] { std::apply(kernel, params); };  // a copy of each parameter per thread
  run_grid(reinterpret_cast<const void*>(kernel), grid, block, smem, body);
}

inline void* dynamic_shared() {
  block_run* b = running_block();
  if (b == nullptr) fail("dynamic shared memory asked for outside a kernel");
  return b->shared;
}

/// Lane `source`'s word in a released collective: undefined on a GPU when that lane has
/// exited, a NaN pattern here.
inline std::uint32_t word_from(const warp_exchange& x, unsigned phase, int source) {
  return (x.arrived[phase] >> source & 1u) != 0 ? x.word[phase][source] : 0x7fbadbadu;
}

template <class V>
inline std::uint32_t word_of(V v) {
  static_assert(sizeof(V) == 4, "kvcap's kernels shuffle 32-bit words");
  return std::bit_cast<std::uint32_t>(v);
}

}  // namespace kvcap::simt

// ---- built-in variables and intrinsics ---------------------------------------------------
#define threadIdx (::kvcap::simt::this_fiber().thread)
#define blockIdx (::kvcap::simt::running_block()->index)
#define blockDim (::kvcap::simt::running_block()->dim)
#define gridDim (::kvcap::simt::running_block()->grid)

inline void __syncthreads() { kvcap::simt::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  unsigned phase;
  (void)kvcap::simt::warp_collective("__syncwarp", mask, 0, phase);
}
template <class V>
inline V __shfl_xor_sync(unsigned mask, V v, int lane_mask, int width = 32) {
  if (width != 32) kvcap::simt::fail("__shfl_xor_sync with a width other than 32");
  unsigned phase;
  const auto& x = kvcap::simt::warp_collective("__shfl_xor_sync", mask, kvcap::simt::word_of(v), phase);
  return std::bit_cast<V>(kvcap::simt::word_from(x, phase, kvcap::simt::this_fiber().lane ^ (lane_mask & 31)));
}
template <class V>
inline V __shfl_down_sync(unsigned mask, V v, unsigned delta, int width = 32) {
  if (width != 32) kvcap::simt::fail("__shfl_down_sync with a width other than 32");
  unsigned phase;
  const auto& x = kvcap::simt::warp_collective("__shfl_down_sync", mask, kvcap::simt::word_of(v), phase);
  const int source = kvcap::simt::this_fiber().lane + static_cast<int>(delta);
  if (source >= 32) return v;  // beyond the warp: the lane keeps its own value
  return std::bit_cast<V>(kvcap::simt::word_from(x, phase, source));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  unsigned phase;
  const auto& x = kvcap::simt::warp_collective("__ballot_sync", mask, predicate != 0 ? 1u : 0u, phase);
  unsigned bits = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((x.arrived[phase] >> lane & 1u) != 0 && x.word[phase][lane] != 0) bits |= 1u << lane;
  return bits;
}
/// A spin-wait's pause: the other threads of the block run, then the other resident blocks.
inline void __nanosleep(unsigned) {
  kvcap::simt::fiber& f = kvcap::simt::this_fiber();
  if (++f.spins > (1ul << 20)) kvcap::simt::fail("a thread spins on work of a block that is not resident");
  kvcap::simt::running_block()->spun = true;
  kvcap::simt::suspend(kvcap::simt::wait_state::running);
}
inline void __threadfence() {}
template <class P>
inline P __ldcg(const P* p) {
  return *p;
}
template <class P>
inline void __stcg(P* p, P v) {
  *p = v;
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
template <class V>
inline V atomicAdd(V* p, V v) {  // as atomicCAS below
  const V old = *p;
  *p = old + v;
  return old;
}
/// One fiber runs at a time and switches only at barriers, collectives and pauses: no other
/// thread runs in between.
inline int atomicCAS(int* p, int compare, int value) {
  const int old = *p;
  if (old == compare) *p = value;
  return old;
}

/// cuda_runtime.h's typed overload (the runtime API takes the kernel as const void*).
template <class Kernel>
inline cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
/// A clock that only moves forward (the probe tests order phases by it; one worker runs at a
/// time, and the baton's hand-over orders its reads and writes).
inline long long clock64() {
  static long long now = 0;
  return ++now;
}
