// bench/bench_host_compress.cpp — what one chunk's compression costs on the host, next to
// what that chunk's attention costs.
//
// Shapes (the issue's): one layer, 8 kv-heads x head_dim 128, 32 query heads (GQA group 4),
// budget M = 4096 tokens, chunk b = 784 tokens (a 28x28 tile), storage float or Eigen::half,
// cache layout HND or NHD, evict reducer, plain sequence structure.
//
// Steady state: the cache holds exactly M = 4096 tokens. Every iteration appends a new chunk
// of 784 tokens (fresh, strictly increasing logical indices), so the layer holds 4880, and
// compresses it back to 4096 — the same work an engine's loop pays per chunk and layer once
// the budget is reached. The lengths are verified on every iteration (4096 -> 4880 -> 4096),
// outside the timed region, so an empty compress can never be measured. A prompt lasts 64
// such chunks (about 55k tokens), then a new one starts (reset + refill, untimed): with
// stationary data a score-based cache keeps the best of everything seen, so in an endless
// prompt fewer and fewer new tokens would survive; 64 chunks keep the state representative.
//
// Data (synthetic, labelled so): keys have a per-head shared direction with a few outlier
// channels, scaled per token, plus Gaussian noise of per-token (log-normal) scale; values are
// Gaussian of per-token scale. Eight such chunks are generated once; every appended chunk is
// a fresh random mix of them (each token s * (a * row + b * another random row)), made
// outside the timed region, so every token is new in norm and direction. The counter
// kept_new shows the scorers really choose.
//
// Two families:
//   step/<dtype>/<layout>/<scorer>      the engine loop: append, reference attention of the
//                                       chunk's 784 x 32 queries over the 4880 resident keys
//                                       (causal), compress. Each phase is timed separately
//                                       inside the same iteration. "Time" is append +
//                                       compress (wall, manual time); "CPU" is Google
//                                       Benchmark's process CPU time of the whole iteration,
//                                       attention included. Counters (means per iteration):
//                                         append_ms, compress_ms, attention_ms (wall),
//                                         ratio     = (append + compress) / attention, wall,
//                                         ratio_cpu = the same on this thread's CPU time.
//                                       Interleaving both in one iteration means a noisy
//                                       neighbour hits numerator and denominator alike.
//   compress/<dtype>/<layout>/<scorer>  append + compress only, many iterations: a precise
//                                       figure for the kvcap side with warm caches. "Time"
//                                       is append + compress (wall); "CPU" also counts the
//                                       untimed chunk synthesis, read kvcap_cpu_ms instead.
//                                       Counters: append_ms, compress_ms (wall), kvcap_cpu_ms;
//                                       kept_new = fraction of the appended chunk that
//                                       survived its compress, all heads: recency keeps
//                                       all of it by design, the others must choose).
//
// After the run a summary table (ratio per scorer/dtype/layout, against the 5 % target) is
// printed by a reporter that wraps the console reporter.
//
// Extra flag (consumed before Google Benchmark parses the rest):
//   --step_iterations=N   iterations of every step/ benchmark (default 3; attention of one
//                         chunk takes about a second or more on one core).

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <kvcap.hpp>

#include "bench_timing.hpp"
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <cstdio>
#include <vector>

namespace {

using kvcap::index_t;

constexpr index_t kKvHeads = 8;
constexpr index_t kQHeads = 32;  // GQA: group of 4 query heads per kv-head
constexpr index_t kHeadDim = 128;
constexpr index_t kBudget = 4096;
constexpr index_t kChunk = 784;
constexpr int kChunkPool = 8;      // pre-generated chunks, mixed afresh for every append
constexpr int kPromptChunks = 64;  // steady-state chunks per prompt (~55k tokens), then reset
constexpr double kTarget = 0.05;

int g_step_iterations = 3;

using kvcap_bench::lap;
using kvcap_bench::stopwatch;

template <class T>
const char* dtype_name() {
  return std::is_same_v<T, float> ? "float" : "half";
}

// ---- Synthetic but structured data ----------------------------------------------------------
// Keys: per head a shared direction (real keys have a large common component and a few
// outlier channels), scaled per token, plus isotropic Gaussian noise whose scale also varies
// per token (log-normal). Norms, cosines to the mean and value norms therefore all spread,
// so every scorer has a non-trivial choice to make.
struct head_profile {
  std::vector<float> mean;  // (dim)
};

std::vector<head_profile> make_profiles(std::mt19937_64& rng, index_t heads) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_int_distribution<int> channel(0, static_cast<int>(kHeadDim) - 1);
  std::vector<head_profile> p(static_cast<std::size_t>(heads));
  for (auto& h : p) {
    h.mean.resize(kHeadDim);
    for (auto& x : h.mean) x = 0.6f * g(rng);
    for (int o = 0; o < 4; ++o) h.mean[channel(rng)] += 4.f * (g(rng) > 0 ? 1.f : -1.f);  // outlier channels
  }
  return p;
}

/// A (tokens, heads, dim) NHD tensor of T; `common` scales the shared head direction.
template <class T>
std::vector<T> make_tensor(std::mt19937_64& rng, index_t tokens, index_t heads, const std::vector<head_profile>& prof,
                           float common, float spread) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::lognormal_distribution<float> scale(0.f, spread);
  std::uniform_real_distribution<float> along(0.2f, 1.6f);
  std::vector<T> out(static_cast<std::size_t>(tokens * heads * kHeadDim));
  for (index_t t = 0; t < tokens; ++t)
    for (index_t h = 0; h < heads; ++h) {
      const auto& mean = prof[static_cast<std::size_t>(h % static_cast<index_t>(prof.size()))].mean;
      const float a = common * along(rng), s = scale(rng);
      T* row = out.data() + (t * heads + h) * kHeadDim;
      for (index_t i = 0; i < kHeadDim; ++i) row[i] = T(a * mean[i] + s * g(rng));
    }
  return out;
}

// A pool of pre-generated chunks (float), and per appended chunk a fresh mix of them: token t
// of head h is s * (a * pool_row + b * random_other_pool_row) with random a, b, s, so every
// appended token is new (new norm, new direction) and the scorers never see a repeat.
struct kv_pool {
  std::vector<std::vector<float>> k, v;  // kChunkPool chunks each, NHD (kChunk, kKvHeads, kHeadDim)
  static const kv_pool& get() {
    static const kv_pool p = [] {
      kv_pool r;
      std::mt19937_64 rng(20260417);
      const auto prof = make_profiles(rng, kKvHeads);
      for (int c = 0; c < kChunkPool; ++c) {
        r.k.push_back(make_tensor<float>(rng, kChunk, kKvHeads, prof, 1.f, 0.35f));
        r.v.push_back(make_tensor<float>(rng, kChunk, kKvHeads, prof, 0.f, 0.45f));
      }
      return r;
    }();
    return p;
  }
};

/// Queries (kQueryPool chunks of 784 x 32 x 128, T): they lean on their kv-head's direction
/// (query head qh reads kv-head qh / 4). Their values do not change the attention's cost.
constexpr int kQueryPool = 2;
template <class T>
const std::vector<std::vector<T>>& query_pool() {
  static const std::vector<std::vector<T>> q = [] {
    std::mt19937_64 rng(20260418);
    const auto prof = make_profiles(rng, kKvHeads);
    std::vector<head_profile> qprof(kQHeads);
    for (std::size_t qh = 0; qh < qprof.size(); ++qh) qprof[qh] = prof[qh / (kQHeads / kKvHeads)];
    std::vector<std::vector<T>> r;
    for (int c = 0; c < kQueryPool; ++c) r.push_back(make_tensor<T>(rng, kChunk, kQHeads, qprof, 0.3f, 0.2f));
    return r;
  }();
  return q;
}

/// splitmix64: cheap randomness for the per-chunk mixing (outside the timed region anyway).
struct fast_rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() >> 40) * 0x1p-24f; }
  index_t below(index_t n) { return static_cast<index_t>(next() % static_cast<std::uint64_t>(n)); }
};

// ---- One layer's compressor in steady state --------------------------------------------------
template <class T, class Layout, class Scorer>
class steady_cache {
 public:
  using compressor_type = kvcap::host::compressor<T, Layout, Scorer, kvcap::budgets::fixed_tokens>;

  explicit steady_cache(Scorer s)
      : c_(kvcap::host::compressor_shape{1, kKvHeads, kQHeads, kHeadDim, kChunk},
           typename compressor_type::policies{s, kvcap::budgets::fixed_tokens{kBudget}, {}, {}}),
        meta_(static_cast<std::size_t>(kChunk)),
        k_stage_(static_cast<std::size_t>(kChunk * kKvHeads * kHeadDim)),
        v_stage_(k_stage_.size()) {
    refill();
  }

  /// Start a new prompt: fill to exactly the budget (no compression needed), then run a few
  /// append + compress rounds so the resident set is a steady-state mix of old and new.
  void refill() {
    c_.reset();
    next_ = 0;
    index_t filled = 0;
    while (filled < kBudget) {
      const index_t n = std::min(kChunk, kBudget - filled);
      prepare(n), append();
      filled += n;
    }
    for (int i = 0; i < 4; ++i) prepare(), append(), c_.compress(0);
    steady_chunks_ = 0;
  }

  /// Untimed: synthesise the next chunk's K, V (fresh tokens) and metadata (fresh indices).
  void prepare(index_t n = kChunk) {
    const auto& p = kv_pool::get();
    const auto& k1 = p.k[static_cast<std::size_t>(chunk_ % kChunkPool)];
    const auto& v1 = p.v[static_cast<std::size_t>(chunk_ % kChunkPool)];
    ++chunk_;
    for (index_t t = 0; t < n; ++t)
      for (index_t h = 0; h < kKvHeads; ++h) {
        const auto other = static_cast<std::size_t>(rng_.below(kChunkPool));
        const index_t t2 = rng_.below(kChunk);
        const float* rows[2][2] = {{k1.data() + (t * kKvHeads + h) * kHeadDim, v1.data() + (t * kKvHeads + h) * kHeadDim},
                                   {p.k[other].data() + (t2 * kKvHeads + h) * kHeadDim,
                                    p.v[other].data() + (t2 * kKvHeads + h) * kHeadDim}};
        T* out[2] = {k_stage_.data() + (t * kKvHeads + h) * kHeadDim, v_stage_.data() + (t * kKvHeads + h) * kHeadDim};
        for (int kv = 0; kv < 2; ++kv) {
          const float sc = std::exp(rng_.uniform(-0.4f, 0.4f)), a = sc * rng_.uniform(0.6f, 1.f),
                      b = sc * rng_.uniform(-0.5f, 0.5f);
          for (index_t i = 0; i < kHeadDim; ++i) out[kv][i] = T(a * rows[0][kv][i] + b * rows[1][kv][i]);
        }
      }
    for (index_t t = 0; t < n; ++t) {
      auto& m = meta_[static_cast<std::size_t>(t)];
      m = {};
      m.index = next_ + t;
      const auto pos = static_cast<std::int32_t>(next_ + t);
      m.position = {pos, pos, pos};
    }
    next_ += n;
    pending_ = n;
  }

  /// Timed: hand the prepared chunk to kvcap.
  void append() {
    c_.append(0, tensor(k_stage_, pending_, kKvHeads), tensor(v_stage_, pending_, kKvHeads),
              std::span<const kvcap::token_meta>(meta_.data(), static_cast<std::size_t>(pending_)));
  }
  void compress() {
    c_.compress(0);
    ++steady_chunks_;
  }

  /// The queries of the last appended chunk (NHD, 784 x 32 x 128).
  kvcap::kv_tensor<const T> last_queries() const {
    return tensor(query_pool<T>()[static_cast<std::size_t>(chunk_ % kQueryPool)], kChunk, kQHeads);
  }

  /// Of the tokens of the last appended chunk, the fraction (over all heads) still resident:
  /// evidence that the scorer really chose (recency keeps all of them by design).
  double kept_of_last_chunk() const {
    const auto& view = c_.layer(0);
    const index_t first = next_ - kChunk;
    index_t kept = 0;
    for (index_t h = 0; h < kKvHeads; ++h)
      for (index_t t = 0; t < view.length; ++t) kept += view.meta_at(t, h).index >= first;
    return static_cast<double>(kept) / static_cast<double>(kChunk * kKvHeads);
  }

  /// A prompt lasts kPromptChunks steady-state chunks; then a new one starts (untimed).
  bool needs_refill() const { return steady_chunks_ >= kPromptChunks; }
  index_t length() const { return c_.length(0); }
  const compressor_type& compressor() const { return c_; }

 private:
  static kvcap::kv_tensor<const T> tensor(const std::vector<T>& data, index_t tokens, index_t heads) {
    return {data.data(), tokens, heads, kHeadDim, kvcap::kv_layout::nhd};
  }

  compressor_type c_;
  std::vector<kvcap::token_meta> meta_;
  std::vector<T> k_stage_, v_stage_;  // the next chunk, NHD
  fast_rng rng_{0x6b766361702d6263ull};
  index_t next_ = 0, pending_ = 0;
  int chunk_ = 0, steady_chunks_ = 0;
};

template <class Cache>
bool check_length(benchmark::State& state, const Cache& cache, index_t expected, const char* when) {
  if (cache.length() == expected) return true;
  state.SkipWithError((std::string("length after ") + when + " is " + std::to_string(cache.length()) +
                       ", expected " + std::to_string(expected))
                          .c_str());
  return false;
}

/// append + compress only.
template <class T, class Layout, class Scorer>
void bm_compress(benchmark::State& state, Scorer scorer) {
  steady_cache<T, Layout, Scorer> cache(scorer);
  lap append_t, compress_t;
  double kept_new = 0;
  for (auto _ : state) {
    if (cache.needs_refill()) cache.refill();  // a new prompt every 64 chunks, untimed
    if (!check_length(state, cache, kBudget, "compress")) break;
    cache.prepare();  // untimed: synthesise the chunk the engine would have computed
    const stopwatch t0;
    cache.append();
    const lap a = t0.elapsed();
    if (!check_length(state, cache, kBudget + kChunk, "append")) break;
    const stopwatch t1;
    cache.compress();
    benchmark::DoNotOptimize(cache.compressor().layer(0).k);
    benchmark::ClobberMemory();
    const lap c = t1.elapsed();
    state.SetIterationTime(a.wall + c.wall);
    append_t += a, compress_t += c;
    kept_new += cache.kept_of_last_chunk();  // untimed
  }
  if (!check_length(state, cache, kBudget, "compress")) return;
  const double it = static_cast<double>(state.iterations());
  state.counters["append_ms"] = 1e3 * append_t.wall / it;
  state.counters["compress_ms"] = 1e3 * compress_t.wall / it;
  state.counters["kvcap_cpu_ms"] = 1e3 * (append_t.cpu + compress_t.cpu) / it;
  state.counters["kept_new"] = kept_new / it;
}

/// The engine loop: append, attention over the 4880 resident keys, compress.
template <class T, class Layout, class Scorer>
void bm_step(benchmark::State& state, Scorer scorer) {
  steady_cache<T, Layout, Scorer> cache(scorer);
  kvcap::host::attention_scratch scratch(kChunk, kBudget + kChunk);  // row-major: the fast way
  std::vector<float> out(static_cast<std::size_t>(kChunk * kQHeads * kHeadDim));
  lap append_t, attention_t, compress_t;
  for (auto _ : state) {
    if (cache.needs_refill()) cache.refill();
    if (!check_length(state, cache, kBudget, "compress")) break;
    cache.prepare();  // untimed: synthesise the chunk the engine would have computed
    const stopwatch t0;
    cache.append();
    const lap a = t0.elapsed();
    if (!check_length(state, cache, kBudget + kChunk, "append")) break;
    const stopwatch t1;
    kvcap::host::reference_attention(cache.compressor().layer(0), cache.last_queries(), /*causal=*/true, scratch,
                                     out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    const lap att = t1.elapsed();
    const stopwatch t2;
    cache.compress();
    benchmark::DoNotOptimize(cache.compressor().layer(0).k);
    benchmark::ClobberMemory();
    const lap c = t2.elapsed();
    state.SetIterationTime(a.wall + c.wall);
    append_t += a, attention_t += att, compress_t += c;
  }
  if (!check_length(state, cache, kBudget, "compress")) return;
  // The attention really ran over finite data.
  if (!std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); })) {
    state.SkipWithError("attention produced a non-finite output");
    return;
  }
  const double it = static_cast<double>(state.iterations());
  state.counters["append_ms"] = 1e3 * append_t.wall / it;
  state.counters["compress_ms"] = 1e3 * compress_t.wall / it;
  state.counters["attention_ms"] = 1e3 * attention_t.wall / it;
  state.counters["ratio"] = (append_t.wall + compress_t.wall) / attention_t.wall;
  state.counters["ratio_cpu"] = (append_t.cpu + compress_t.cpu) / attention_t.cpu;
}

// ---- Registration ------------------------------------------------------------------------------
template <class T, class Layout, class Scorer>
void register_all(const char* layout_name, const char* scorer_name, Scorer s) {
  const std::string tail = std::string(dtype_name<T>()) + "/" + layout_name + "/" + scorer_name;
  benchmark::RegisterBenchmark(("compress/" + tail).c_str(), bm_compress<T, Layout, Scorer>, s)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("step/" + tail).c_str(), bm_step<T, Layout, Scorer>, s)
      ->UseManualTime()
      ->Iterations(g_step_iterations)
      ->Unit(benchmark::kMillisecond);
}

template <class T, class Layout>
void register_layout(const char* layout_name) {
  register_all<T, Layout>(layout_name, "key_norm", kvcap::scorers::key_norm{});
  register_all<T, Layout>(layout_name, "value_norm", kvcap::scorers::value_norm{});
  register_all<T, Layout>(layout_name, "recency", kvcap::scorers::recency{});
  register_all<T, Layout>(layout_name, "key_diff", kvcap::scorers::key_diff{});
}

// ---- Machine description ------------------------------------------------------------------------
std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

std::string simd_flags() {
  std::istringstream flags(cpuinfo_field("flags"));
  std::string out;
  for (std::string f; flags >> f;)
    if (f.rfind("avx", 0) == 0 || f == "fma" || f == "f16c" || f == "sse4_2") out += (out.empty() ? "" : " ") + f;
  return out;
}

void add_context() {
  benchmark::AddCustomContext("cpu_model", cpuinfo_field("model name"));
  benchmark::AddCustomContext("cpu_flags_simd", simd_flags());
  benchmark::AddCustomContext("hardware_threads", std::to_string(std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("compiler", __VERSION__);
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
#ifdef NDEBUG
  benchmark::AddCustomContext("kvcap_build", "NDEBUG (optimised), no -march flags");
#else
  benchmark::AddCustomContext("kvcap_build", "assertions on (NOT a release build)");
#endif
  benchmark::AddCustomContext(
      "shape", "1 layer, 8 kv-heads x 128 dim, 32 q-heads (GQA group 4), budget 4096, chunk 784, evict, sequence");
  benchmark::AddCustomContext("step_iterations", std::to_string(g_step_iterations));
}

// ---- Summary reporter ---------------------------------------------------------------------------
class summary_reporter : public benchmark::ConsoleReporter {
 public:
  explicit summary_reporter(OutputOptions o) : ConsoleReporter(o) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      const std::string& name = r.run_name.function_name;  // without /iterations:N/manual_time
      auto get = [&](const char* c) {
        const auto it = r.counters.find(c);
        return it == r.counters.end() ? -1.0 : it->second.value;
      };
      if (name.rfind("step/", 0) == 0) {
        auto& row = rows_[name.substr(5)];
        row.ratio.push_back(get("ratio"));
        row.ratio_cpu.push_back(get("ratio_cpu"));
        row.attention_ms.push_back(get("attention_ms"));
        row.step_kv_ms.push_back(get("append_ms") + get("compress_ms"));
      } else if (name.rfind("compress/", 0) == 0) {
        rows_[name.substr(9)].warm_kv_ms.push_back(get("append_ms") + get("compress_ms"));
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    auto& os = GetOutputStream();
    os << "\nSummary: kvcap (append + compress) of one 784-token chunk vs. reference attention of the\n"
          "same chunk's 784 x 32 queries over the 4880 resident keys, per layer. ratio = kvcap / attention,\n"
          "both measured inside the same step/ iterations, on wall time and on this thread's CPU time;\n"
          "kvcap ms are wall; warm = the compress/ benchmark (kvcap alone, caches warm).\n"
          "Ranges are min..max over repetitions when --benchmark_repetitions > 1.\n\n";
    os << std::left << std::setw(26) << "dtype/layout/scorer" << std::right << std::setw(16) << "kvcap ms (step)"
       << std::setw(16) << "kvcap ms (warm)" << std::setw(18) << "attention ms" << std::setw(18) << "ratio (wall)"
       << std::setw(18) << "ratio (cpu)" << "  target<=5%\n";
    for (const auto& [name, row] : rows_) {
      if (row.ratio.empty()) continue;
      const bool met = *std::max_element(row.ratio.begin(), row.ratio.end()) <= kTarget &&
                       *std::max_element(row.ratio_cpu.begin(), row.ratio_cpu.end()) <= kTarget;
      os << std::left << std::setw(26) << name << std::right << std::setw(16) << range(row.step_kv_ms, 2)
         << std::setw(16) << range(row.warm_kv_ms, 2) << std::setw(18) << range(row.attention_ms, 1) << std::setw(18)
         << range_pct(row.ratio)
         << std::setw(18) << range_pct(row.ratio_cpu) << "  " << (met ? "met" : "MISSED") << "\n";
    }
    os.flush();
  }

 private:
  struct row_data {
    std::vector<double> ratio, ratio_cpu, attention_ms, step_kv_ms, warm_kv_ms;
  };
  static std::string range(const std::vector<double>& v, int digits) {
    if (v.empty()) return "-";
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << *lo;
    if (v.size() > 1) s << ".." << *hi;
    return s.str();
  }
  static std::string range_pct(const std::vector<double>& v) {
    std::vector<double> p(v.size());
    std::transform(v.begin(), v.end(), p.begin(), [](double x) { return 100 * x; });
    return range(p, 3) + " %";
  }
  std::map<std::string, row_data> rows_;
};

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first, then Google Benchmark's.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--step_iterations=", 0) == 0)
      g_step_iterations = std::max(1, std::atoi(a.c_str() + 18));
    else
      argv[kept++] = argv[i];
  }
  argc = kept;

  add_context();
  register_layout<float, kvcap::layouts::hnd>("hnd");
  register_layout<Eigen::half, kvcap::layouts::hnd>("hnd");
  register_layout<float, kvcap::layouts::nhd>("nhd");
  register_layout<Eigen::half, kvcap::layouts::nhd>("nhd");

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Colours only on a terminal, so files written by run_host_bench.sh stay plain text.
  summary_reporter reporter(isatty(fileno(stdout)) ? benchmark::ConsoleReporter::OO_ColorTabular
                                                   : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
