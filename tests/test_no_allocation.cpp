// No allocation after construction.
//
// This executable replaces every form of global operator new and delete (plain, array,
// nothrow, aligned, sized) with counting versions, and on glibc (outside AddressSanitizer,
// which owns malloc itself) also interposes malloc, calloc, realloc and the aligned
// allocators, which Eigen and C code use. Every compressor's storage and workspace resource
// is wrapped in a host::counting_resource. After construction, many chunks of
// append + layer() + compress run for every scorer, float and half, both layouts, and
// neither global new, nor malloc, nor any resource may be asked for memory.
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> news{0}, mallocs{0};
void* volatile escaped = nullptr;  // where the self-check's allocations escape to

void* counted_new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* counted_new(std::size_t n, std::align_val_t a) {
  if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
  const auto align = static_cast<std::size_t>(a);
  const std::size_t size = (n + align - 1) / align * align;
  if (void* p = std::aligned_alloc(align, size ? size : align)) return p;
  throw std::bad_alloc();
}
}  // namespace

// ---- global operator new / delete, all forms ----------------------------------------------
void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) { return counted_new(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new(n, a); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

// ---- malloc family (glibc, not under ASan) --------------------------------------------------
#if defined(__SANITIZE_ADDRESS__)
#define KVCAP_TEST_NO_MALLOC_HOOK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define KVCAP_TEST_NO_MALLOC_HOOK 1
#endif
#endif
#if defined(__GLIBC__) && !defined(KVCAP_TEST_NO_MALLOC_HOOK)
#define KVCAP_TEST_MALLOC_HOOK 1
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

static inline void count_malloc() {
  if (counting.load(std::memory_order_relaxed)) mallocs.fetch_add(1, std::memory_order_relaxed);
}
void* malloc(std::size_t n) noexcept {
  count_malloc();
  return __libc_malloc(n);
}
void* calloc(std::size_t count, std::size_t n) noexcept {
  count_malloc();
  return __libc_calloc(count, n);
}
void* realloc(void* p, std::size_t n) noexcept {
  count_malloc();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
  count_malloc();
  return __libc_memalign(align, n);
}
void* memalign(std::size_t align, std::size_t n) noexcept {
  count_malloc();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
  count_malloc();
  if (align % sizeof(void*) != 0 || (align & (align - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

namespace {

using namespace kvcap;

struct counts {
  std::size_t news = 0, mallocs = 0;
};
/// Runs `f` with the counters on; no doctest assertion may run inside.
template <class F>
counts count_allocations(F&& f) {
  news = 0, mallocs = 0;
  counting = true;
  f();
  counting = false;
  return {news.load(), mallocs.load()};
}

template <class S>
S default_structure() {
  if constexpr (std::is_same_v<S, structures::sequence>) return {.length = 1 << 20};
  else return {};
}

/// A compressor over a counted resource, fed 40 chunks after construction with the global
/// counters on: nothing may allocate.
template <class T, class Layout, class Scorer, class Reducer = reducers::evict,
          class Structure = structures::sequence>
void check_no_allocation(Scorer scorer, Structure structure = default_structure<Structure>()) {
  const index_t layers = 3, heads = 2, q_heads = 4, dim = 24, budget = 48, max_chunk = 32, chunks = 40,
                window = 8;
  const index_t total = max_chunk * chunks;
  host::counting_resource resource;
  host::compressor<T, Layout, Scorer, budgets::fixed_tokens, Reducer, Structure> c(
      {.num_layers = layers, .num_kv_heads = heads, .num_q_heads = q_heads, .head_dim = dim,
       .max_chunk = max_chunk, .max_window = window},
      {.scorer = scorer, .budget = {budget}, .structure = structure}, &resource);
  const std::size_t allocations_after_construction = resource.allocations();
  const std::size_t bytes_after_construction = resource.current_bytes();

  // All inputs exist before counting starts (the engine's buffers).
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<T> k(static_cast<std::size_t>(total * heads * dim)), v(k.size()), q(static_cast<std::size_t>(window * q_heads * dim));
  for (auto& x : k) x = T(normal(rng));
  for (auto& x : v) x = T(normal(rng));
  for (auto& x : q) x = T(normal(rng));
  std::vector<token_meta> meta(static_cast<std::size_t>(total));
  for (index_t tok = 0; tok < total; ++tok) {
    meta[tok] = structure.meta(tok);
    meta[tok].is_protected = tok % 97 == 5;
  }
  float checksum = 0.f;
  index_t max_length = 0, final_length = 0;

  const counts got = count_allocations([&] {
    for (index_t chunk = 0; chunk < chunks; ++chunk) {
      // Chunk sizes vary, from 0 to max_chunk, but the input is consumed in order.
      const index_t begin = chunk * max_chunk, n = chunk % 5 == 4 ? 0 : max_chunk - chunk % 3;
      for (index_t layer = 0; layer < layers; ++layer) {
        const auto* kp = k.data() + begin * heads * dim;
        const auto* vp = v.data() + begin * heads * dim;
        c.append(layer, {kp, n, heads, dim}, {vp, n, heads, dim}, std::span(meta).subspan(begin, n));
        const auto& view = c.layer(layer);  // the engine's attention reads it here
        max_length = std::max(max_length, view.length);
        checksum += static_cast<float>(view.k[view.mapping(view.length - 1, 1)]);
        if constexpr (Scorer::inputs.window_mass) {
          const index_t w = std::min(window, view.length);
          c.compress(layer, {q.data(), w, q_heads, dim});
        } else {
          c.compress(layer);
        }
      }
    }
    final_length = c.length(0);
  });

  CHECK(got.news == 0);
#if KVCAP_TEST_MALLOC_HOOK
  CHECK(got.mallocs == 0);
#endif
  CHECK(resource.allocations() == allocations_after_construction);
  CHECK(resource.current_bytes() == bytes_after_construction);
  CHECK(max_length <= budget + max_chunk);
  CHECK(final_length == budget);
  CHECK(std::isfinite(checksum));
}

}  // namespace

TEST_CASE("the counters see global new, malloc and Eigen allocations") {
  // Without this the zero counts below would prove nothing. Each pointer escapes through a
  // volatile store: a new-expression whose result does not escape may be elided ([expr.new],
  // since C++14), and Clang at -O2 elides the aligned array below, which made the count 0.
  volatile std::size_t sink = 0;
  const counts with_new = count_allocations([&] {
    auto* p = new std::vector<int>(100);
    escaped = p;
    sink = sink + p->size();
    delete p;
  });
  CHECK(with_new.news >= 2);  // the vector object and its buffer
  const counts with_aligned_new = count_allocations([&] {
    struct alignas(64) wide {
      float x[16];
    };
    auto* p = new wide[3];
    escaped = p;
    sink = sink + reinterpret_cast<std::uintptr_t>(p) % 64;
    delete[] p;
  });
  CHECK(with_aligned_new.news == 1);
  CHECK(sink == 100);
#if KVCAP_TEST_MALLOC_HOOK
  const counts with_eigen = count_allocations([&] {
    Eigen::MatrixXf m(37, 41);
    m.setOnes();
    escaped = m.data();
    sink = sink + static_cast<std::size_t>(m.sum());
  });
  CHECK(with_eigen.mallocs >= 1);
  CHECK(with_eigen.news == 0);  // Eigen calls malloc, not new: why malloc is hooked too
#endif
  host::counting_resource r;
  void* p = r.allocate(100, 8);
  CHECK(r.allocations() == 1);
  r.deallocate(p, 100, 8);
}

TEST_CASE_TEMPLATE("no allocation after construction, key_norm / value_norm / recency / key_diff", T, float,
                   Eigen::half) {
  check_no_allocation<T, layouts::nhd>(scorers::key_norm{});
  check_no_allocation<T, layouts::hnd>(scorers::key_norm{});
  check_no_allocation<T, layouts::nhd>(scorers::value_norm{});
  check_no_allocation<T, layouts::hnd>(scorers::value_norm{});
  check_no_allocation<T, layouts::nhd>(scorers::recency{.num_sinks = 4});
  check_no_allocation<T, layouts::hnd>(scorers::recency{.num_sinks = 4});
  check_no_allocation<T, layouts::nhd>(scorers::key_diff{});
  check_no_allocation<T, layouts::hnd>(scorers::key_diff{});
}

TEST_CASE_TEMPLATE("no allocation after construction, composite, window and structure scorers", T, float,
                   Eigen::half) {
  check_no_allocation<T, layouts::nhd>(scorers::observation_window{.pool_radius = 2});
  check_no_allocation<T, layouts::hnd>(scorers::blend<scorers::key_norm, scorers::value_norm>{});
  check_no_allocation<T, layouts::nhd>(scorers::forced_keep<scorers::key_diff>{.num_sinks = 2, .num_recent = 4});
  const structures::temporal_frames video{.frames = 40, .rows = 4, .cols = 8};  // 32 tokens a frame
  check_no_allocation<T, layouts::hnd, scorers::temporal_redundancy, reducers::evict>(scorers::temporal_redundancy{},
                                                                                      video);
  check_no_allocation<T, layouts::nhd, scorers::key_norm, reducers::merge>(scorers::key_norm{}, video);
}
