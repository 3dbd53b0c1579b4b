// examples/video_prefill.cpp — kvcap's main example: a video prompt prefilled chunk by chunk
// through a small transformer whose KV cache kvcap keeps at a fixed token budget.
//
// SEMI-REAL. The pixels are real (street footage decoded by ffmpeg, with the spatial and
// temporal redundancy of real video); the transformer is not: its weights are fixed, seeded
// random projections. The run shows memory exactly (measured against the formula) and how
// far the attention output of probe queries drifts from an uncompressed cache, compared
// across scorers. It says nothing about a trained model's accuracy.
//
// The engine loop kvcap serves (run_prefill below), for each prefill chunk and each layer:
//
//   1. q, k, v of the chunk's tokens; q and k rotated by M-RoPE at the tokens' positions;
//   2. cache.append(layer, k, v, meta)   the layer now holds ≤ budget + chunk tokens (peak);
//   3. attention of the chunk's queries over cache.layer(layer)   (the engine's own kernel;
//      here kvcap::host::reference_attention);
//   4. cache.compress(layer)             back to ≤ budget tokens.
//
// The toy model. One token stands for 28×28 pixels (Qwen2.5-VL: 14-px patches merged 2×2).
// Its feature is the CLIP-normalised 28·28·3 pixel patch, embedded into a residual stream of
// width 256 by a fixed random projection. Layer l computes x = rmsnorm(h), q = x·Wq,
// k = x·Wk, v = x·Wv, o = attention(q over its cache) and h += o·Wo, so a later layer's keys
// carry what earlier layers attended to and no two layers are alike. The prompt is a
// structures::mixed of three segments: a protected text system prompt, the video
// (frames × rows × cols) and a protected text question, whose tokens are the probe queries.
// Text tokens get synthetic Gaussian embeddings.

#include <Eigen/Core>
#include <kvcap.hpp>

#include "fidelity/npy.hpp"  // tools/: the .npy writer behind --dump

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using kvcap::index_t;
using kvcap::token_meta;
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using seconds = std::chrono::duration<double>;
using clock_type = std::chrono::steady_clock;

// ---- Model and prompt constants -------------------------------------------------------------
constexpr index_t patch_px = 28;  // one token = 28×28 px (14-px patches merged 2×2)
constexpr index_t patch_features = patch_px * patch_px * 3;
constexpr index_t kv_heads = 2, q_heads = 4, head_dim = 64;
constexpr index_t model_width = q_heads * head_dim;  // the residual stream
constexpr index_t system_tokens = 8, question_tokens = 12;
constexpr std::uint32_t seed = 20260401;  // every weight and text embedding derives from it

// ---- Command line ---------------------------------------------------------------------------
struct options {
  std::string video = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
  std::string scorer = "key_diff";
  std::string budget = "10%";  // "N%" of the video tokens, or a token count
  index_t frames = 16, stride = 50, layers = 4, chunk_frames = 1;
  double scale = 1.0;
  bool half = false;
  std::string dump;  // write the full-cache run's K, V, Q and probes here (tools/fidelity reads it)
  bool dump_only = false;
};

constexpr const char* usage = R"(usage: video_prefill [VIDEO] [options]
  VIDEO             any video ffmpeg can decode
                    (default: Debian opencv-doc's examples/data/vtest.avi)
  --scorer NAME     key_diff (default), key_norm, value_norm, recency, random
  --budget B        tokens each layer keeps: N% of the video tokens (default 10%) or a count
  --frames N        frames to decode (default 16)
  --stride S        take 1 frame in S (default 50: 5 s apart at 10 fps, vtest.avi end to end)
  --layers L        transformer layers (default 4)
  --chunk-frames F  video frames per prefill chunk after the bulk pass (default 1)
  --scale X         resize factor before cutting 28-px tokens (default 1: full resolution)
  --half            store K and V as Eigen::half instead of float
  --dump DIR        also write the full-cache run's per-layer K, V, Q and the probe
                    queries as a K/V dump (manifest.txt + .npy; see tools/fidelity)
  --dump-only       with --dump: write the dump and stop after the full-cache run
)";

const std::array<const char*, 5> scorer_names = {"key_diff", "key_norm", "value_norm", "recency", "random"};

/// A positive number, all of `text`; `what` names it in the error.
double positive_number(const std::string& what, const std::string& text) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
  }
  if (used == 0 || used != text.size() || !(x > 0) || !std::isfinite(x))
    throw std::invalid_argument(what + " needs a positive number, got '" + text + "'");
  return x;
}

index_t positive_integer(const std::string& what, const std::string& text) {
  const double x = positive_number(what, text);
  if (x != std::floor(x)) throw std::invalid_argument(what + " needs a whole number, got '" + text + "'");
  return static_cast<index_t>(x);
}

/// --budget: "N%" of the video tokens, or a token count.
index_t budget_tokens(const std::string& text, index_t video_tokens) {
  if (!text.empty() && text.back() == '%')
    return std::llround(positive_number("--budget", text.substr(0, text.size() - 1)) *
                        static_cast<double>(video_tokens) / 100.0);
  return positive_integer("--budget", text);
}

/// Throws std::invalid_argument on a bad command line, and with an empty message for --help.
options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") throw std::invalid_argument("");
    else if (arg == "--scorer") o.scorer = value();
    else if (arg == "--budget") o.budget = value();
    else if (arg == "--frames") o.frames = positive_integer(arg, value());
    else if (arg == "--stride") o.stride = positive_integer(arg, value());
    else if (arg == "--layers") o.layers = positive_integer(arg, value());
    else if (arg == "--chunk-frames") o.chunk_frames = positive_integer(arg, value());
    else if (arg == "--scale") o.scale = positive_number(arg, value());
    else if (arg == "--half") o.half = true;
    else if (arg == "--dump") o.dump = value();
    else if (arg == "--dump-only") o.dump_only = true;
    else if (arg.rfind("--", 0) == 0) throw std::invalid_argument("unknown option " + arg);
    else o.video = arg;
  }
  if (std::find(scorer_names.begin(), scorer_names.end(), o.scorer) == scorer_names.end())
    throw std::invalid_argument("unknown scorer '" + o.scorer + "'");
  budget_tokens(o.budget, 1);  // validates the syntax now, before decoding anything
  if (o.dump_only && o.dump.empty()) throw std::invalid_argument("--dump-only needs --dump DIR");
  return o;
}

// ---- The machine ------------------------------------------------------------------------------
std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// ---- Decoding the video with ffmpeg -----------------------------------------------------------
struct video {
  index_t source_width = 0, source_height = 0;  // as stored in the file
  index_t rows = 0, cols = 0;                   // token grid of one frame
  index_t frames = 0;                           // frames actually decoded
  std::vector<std::uint8_t> rgb;                // (frames, rows·28, cols·28, 3)
  index_t width_px() const { return cols * patch_px; }
  index_t height_px() const { return rows * patch_px; }
  index_t frame_tokens() const { return rows * cols; }
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs `command` and returns what it printed (small outputs only).
std::string read_command(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[256];
    while (std::fgets(buffer, sizeof buffer, pipe)) out += buffer;
    pclose(pipe);
  }
  return out;
}

/// Decodes every `stride`-th frame, scaled so that the frame is a whole number of 28-px
/// tokens, as raw RGB read from an ffmpeg subprocess.
video decode_video(const options& o) {
  if (std::system("command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1") != 0)
    throw std::runtime_error("ffmpeg/ffprobe not found on PATH (Debian: apt-get install ffmpeg)");
  if (!std::filesystem::is_regular_file(o.video))
    throw std::runtime_error("video not found: " + o.video +
                             " (the default comes with Debian's opencv-doc; or pass a video path)");
  video v;
  const std::string size = read_command("ffprobe -v error -select_streams v:0 -show_entries stream=width,height "
                                        "-of csv=p=0:s=x " + shell_quote(o.video));
  if (std::sscanf(size.c_str(), "%ldx%ld", &v.source_width, &v.source_height) != 2)
    throw std::runtime_error("ffprobe found no video stream in " + o.video);
  v.cols = static_cast<index_t>(v.source_width * o.scale) / patch_px;
  v.rows = static_cast<index_t>(v.source_height * o.scale) / patch_px;
  if (v.rows < 1 || v.cols < 1) throw std::runtime_error("--scale leaves less than one 28-px token");

  const std::string command = "ffmpeg -v error -i " + shell_quote(o.video) + " -vf 'select=not(mod(n\\," +
                              std::to_string(o.stride) + ")),scale=" + std::to_string(v.width_px()) + ":" +
                              std::to_string(v.height_px()) + "' -vsync vfr -frames:v " +
                              std::to_string(o.frames) + " -f rawvideo -pix_fmt rgb24 -";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot start: " + command);
  const auto frame_bytes = static_cast<std::size_t>(v.width_px() * v.height_px() * 3);
  v.rgb.resize(frame_bytes * static_cast<std::size_t>(o.frames));
  while (v.frames < o.frames &&
         std::fread(v.rgb.data() + v.frames * frame_bytes, 1, frame_bytes, pipe) == frame_bytes)
    ++v.frames;
  const int status = pclose(pipe);
  if (v.frames == 0) throw std::runtime_error("ffmpeg decoded no frame (exit status " + std::to_string(status) + ")");
  v.rgb.resize(frame_bytes * static_cast<std::size_t>(v.frames));
  return v;
}

// ---- The toy model: seeded random projections ------------------------------------------------
struct layer_weights {
  matrix wq, wk, wv, wo;  // (in, out): y = x · W
};

struct toy_model {
  matrix embed;  // (patch_features, model_width)
  std::vector<layer_weights> layers;
  std::vector<float> inv_freq;  // rotary frequencies, head_dim / 2
};

/// Gaussian entries scaled 1/sqrt(fan_in), so a projection keeps the scale of its input.
matrix gaussian(index_t rows, index_t cols, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, stddev);
  matrix m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}
float fan_in_scale(index_t fan_in) { return 1.f / std::sqrt(static_cast<float>(fan_in)); }

toy_model make_model(index_t layers) {
  std::mt19937 rng(seed);
  toy_model m;
  m.embed = gaussian(patch_features, model_width, fan_in_scale(patch_features), rng);
  for (index_t l = 0; l < layers; ++l) {
    const float s = fan_in_scale(model_width);
    m.layers.push_back({gaussian(model_width, q_heads * head_dim, s, rng),
                        gaussian(model_width, kv_heads * head_dim, s, rng),
                        gaussian(model_width, kv_heads * head_dim, s, rng),
                        gaussian(q_heads * head_dim, model_width, fan_in_scale(q_heads * head_dim), rng)});
  }
  for (index_t i = 0; i < head_dim / 2; ++i)
    m.inv_freq.push_back(std::pow(10000.f, -2.f * static_cast<float>(i) / static_cast<float>(head_dim)));
  return m;
}

/// M-RoPE as in Qwen2-VL: the head_dim/2 rotary frequencies are split into sections driven
/// by the t, h and w components of the token's position (8 / 12 / 12 of 32 here, the
/// proportions of Qwen2.5-VL's 16 / 24 / 24 of 64). Dims i and i + head_dim/2 form a pair
/// (the rotate_half convention). Text tokens have t = h = w, i.e. plain RoPE.
void apply_mrope(matrix& x, index_t heads, std::span<const token_meta> meta, const std::vector<float>& inv_freq) {
  const index_t half = head_dim / 2, t_end = half / 4, h_end = t_end + (half - t_end) / 2;
  for (index_t tok = 0; tok < x.rows(); ++tok) {
    const kvcap::rope_position p = meta[tok].position;
    for (index_t i = 0; i < half; ++i) {
      const auto pos = static_cast<float>(i < t_end ? p.t : i < h_end ? p.h : p.w);
      const float c = std::cos(pos * inv_freq[i]), s = std::sin(pos * inv_freq[i]);
      for (index_t head = 0; head < heads; ++head) {
        float* r = &x(tok, head * head_dim);
        const float a = r[i], b = r[i + half];
        r[i] = a * c - b * s;
        r[i + half] = b * c + a * s;
      }
    }
  }
}

matrix rms_norm(const matrix& h) {
  const Eigen::ArrayXf rms = (h.rowwise().squaredNorm().array() / static_cast<float>(h.cols()) + 1e-6f).sqrt();
  return h.array().colwise() / rms;
}

// ---- The prompt: system text | video | question ---------------------------------------------
struct prompt {
  std::array<kvcap::structures::segment, 3> segments;
  matrix embeddings;  // (tokens, model_width), prompt order
  index_t video_tokens = 0, question_begin = 0;

  kvcap::structures::mixed structure() const { return {segments}; }
  index_t num_tokens() const { return embeddings.rows(); }
};

/// The 28·28·3 pixels of each token of frame `f`, CLIP-normalised: (frame_tokens, 2352).
matrix frame_patches(const video& v, index_t f) {
  constexpr float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  constexpr float stddev[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  matrix patches(v.frame_tokens(), patch_features);
  const std::uint8_t* frame = v.rgb.data() + f * v.width_px() * v.height_px() * 3;
  for (index_t row = 0; row < v.rows; ++row)
    for (index_t col = 0; col < v.cols; ++col) {
      float* out = &patches(row * v.cols + col, 0);  // raster order, as structures::mixed numbers it
      for (index_t y = 0; y < patch_px; ++y)
        for (index_t x = 0; x < patch_px; ++x)
          for (index_t ch = 0; ch < 3; ++ch) {
            const std::uint8_t px = frame[((row * patch_px + y) * v.width_px() + col * patch_px + x) * 3 + ch];
            *out++ = (static_cast<float>(px) / 255.f - mean[ch]) / stddev[ch];
          }
    }
  return patches;
}

prompt make_prompt(const video& v, const toy_model& m) {
  using kvcap::structures::segment;
  prompt p;
  p.segments = {segment::text(system_tokens, /*is_protected=*/true), segment::video(v.frames, v.rows, v.cols),
                segment::text(question_tokens, /*is_protected=*/true)};
  p.video_tokens = v.frames * v.frame_tokens();
  p.question_begin = system_tokens + p.video_tokens;
  p.embeddings.resize(p.question_begin + question_tokens, model_width);
  std::mt19937 rng(seed + 1);
  p.embeddings.topRows(system_tokens) = gaussian(system_tokens, model_width, 1.f, rng);
  for (index_t f = 0; f < v.frames; ++f)
    p.embeddings.middleRows(system_tokens + f * v.frame_tokens(), v.frame_tokens()) = frame_patches(v, f) * m.embed;
  p.embeddings.bottomRows(question_tokens) = gaussian(question_tokens, model_width, 1.f, rng);
  return p;
}

// ---- A custom scorer: random eviction, the trivial baseline ----------------------------------
/// Any type modelling kvcap::scorer plugs into the compressor. This one gives each
/// (token, kv-head) a fixed pseudo-random score, so the kept set is a uniform random sample.
struct random_scorer {
  static constexpr kvcap::score_inputs inputs{};
  template <class Context>
  float score(const Context& ctx, index_t tok) const {
    std::uint64_t x = static_cast<std::uint64_t>(ctx.meta(tok).index) * 0x9E3779B97F4A7C15ull +
                      static_cast<std::uint64_t>(ctx.head()) + 1;  // splitmix64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<float>((x ^ (x >> 31)) >> 40) * 0x1p-24f;
  }
};
static_assert(kvcap::scorer<random_scorer>);

/// Calls f(scorer) with the scorer named `name` (the compressor's scorer is a type).
template <class F>
auto with_scorer(const std::string& name, F&& f) {
  namespace s = kvcap::scorers;
  if (name == "key_norm") return f(s::key_norm{});
  if (name == "value_norm") return f(s::value_norm{});
  if (name == "recency") return f(s::recency{});
  if (name == "random") return f(random_scorer{});
  return f(s::key_diff{});
}

// ---- Running a prefill --------------------------------------------------------------------------
template <class T, class Scorer>
using video_compressor = kvcap::host::compressor<T, kvcap::layouts::nhd, Scorer, kvcap::budgets::fixed_tokens,
                                                 kvcap::reducers::evict, kvcap::structures::mixed>;

template <class T>
std::vector<T> to_storage(const matrix& m) {
  std::vector<T> out(static_cast<std::size_t>(m.size()));
  for (index_t i = 0; i < m.size(); ++i) out[i] = static_cast<T>(m.data()[i]);
  return out;
}

/// A (tokens, heads, head_dim) NHD tensor over `data`: how an engine hands its buffers over.
template <class T>
kvcap::kv_tensor<const T> as_tensor(const std::vector<T>& data, index_t heads) {
  return {data.data(), static_cast<index_t>(data.size()) / (heads * head_dim), heads, head_dim, kvcap::kv_layout::nhd};
}

/// The peak formula, computed from the shape alone: every layer holds budget + max_chunk
/// slots of K and V for each kv-head plus one token_meta each, plus the scoring workspace.
template <class T, class Compressor>
std::size_t peak_formula(const kvcap::host::compressor_shape& s, index_t budget) {
  const std::size_t slot = s.num_kv_heads * (2 * s.head_dim * sizeof(T) + sizeof(token_meta));
  return s.num_layers * (budget + s.max_chunk) * slot + Compressor::workspace_bytes(s, budget + s.max_chunk);
}

template <class T>
struct run_result {
  std::string name;
  index_t budget = 0;
  std::size_t peak_bytes = 0, formula_bytes = 0;  // 0: not measured
  double seconds = 0;
  std::vector<std::vector<T>> probe_queries;  // per layer: the question tokens' queries
  std::vector<matrix> probe_outputs;          // per layer: (question_tokens, q_heads·head_dim)
  // The final cache and every token's queries (full-cache run only), for compressing it
  // after prefill and for --dump.
  std::vector<std::vector<T>> final_k, final_v, all_queries;
  std::vector<std::vector<token_meta>> final_meta;
};

/// The probe: the question tokens' queries attend, non-causally, over each layer's final cache.
template <class T, class Compressor>
void probe(const Compressor& cache, run_result<T>& r) {
  kvcap::host::attention_scratch scratch;
  for (index_t layer = 0; layer < cache.num_layers(); ++layer) {
    matrix out(question_tokens, q_heads * head_dim);
    kvcap::host::reference_attention(cache.layer(layer), as_tensor(r.probe_queries[layer], q_heads),
                                     /*causal=*/false, scratch, out.data());
    r.probe_outputs.push_back(std::move(out));
  }
}

/// Chunked prefill of the whole prompt, each layer's cache kept at `budget` tokens by kvcap.
template <class T, class Scorer>
run_result<T> run_prefill(std::string name, Scorer scorer, index_t budget, const prompt& p, const toy_model& m,
                          const std::vector<kvcap::chunk_range>& chunks, index_t max_chunk, bool keep_final) {
  using compressor_t = video_compressor<T, Scorer>;
  const auto start = clock_type::now();
  const auto layers = static_cast<index_t>(m.layers.size());
  const kvcap::host::compressor_shape shape{layers, kv_heads, q_heads, head_dim, max_chunk};
  kvcap::host::counting_resource memory;  // every byte kvcap allocates passes through it
  compressor_t cache(shape, {.scorer = scorer, .budget = {budget}, .structure = p.structure()}, &memory);

  run_result<T> r;
  r.name = std::move(name);
  r.budget = budget;
  r.probe_queries.resize(static_cast<std::size_t>(layers));
  if (keep_final) r.all_queries.resize(static_cast<std::size_t>(layers));
  std::vector<token_meta> meta;
  kvcap::host::attention_scratch scratch;
  for (const kvcap::chunk_range& chunk : chunks) {
    meta.clear();
    for (index_t tok = chunk.begin; tok < chunk.end; ++tok) meta.push_back(p.structure().meta(tok));
    matrix h = p.embeddings.middleRows(chunk.begin, chunk.size());  // the chunk's residual stream
    for (index_t layer = 0; layer < layers; ++layer) {
      const layer_weights& w = m.layers[layer];
      // 1. The chunk's q, k, v, rotated by M-RoPE (the engine's work).
      const matrix x = rms_norm(h);
      matrix q = x * w.wq, k = x * w.wk;
      apply_mrope(q, q_heads, meta, m.inv_freq);
      apply_mrope(k, kv_heads, meta, m.inv_freq);
      const std::vector<T> q_t = to_storage<T>(q), k_t = to_storage<T>(k), v_t = to_storage<T>(x * w.wv);
      // 2. kvcap: append the chunk. The layer may now hold budget + chunk tokens.
      cache.append(layer, as_tensor(k_t, kv_heads), as_tensor(v_t, kv_heads), meta);
      // 3. The engine's attention: the chunk's queries (the last slots) over the layer's cache.
      matrix o(chunk.size(), q_heads * head_dim);
      kvcap::host::reference_attention(cache.layer(layer), as_tensor(q_t, q_heads), /*causal=*/true, scratch,
                                       o.data());
      // 4. kvcap: compress the layer back to its budget.
      cache.compress(layer);
      h += o * w.wo;
      if (keep_final) r.all_queries[layer].insert(r.all_queries[layer].end(), q_t.begin(), q_t.end());
      // Keep the question tokens' queries: they are the probe queries.
      if (chunk.end > p.question_begin) {
        const index_t first = std::max<index_t>(0, p.question_begin - chunk.begin);
        auto& probe_q = r.probe_queries[layer];
        probe_q.insert(probe_q.end(), q_t.begin() + first * q_heads * head_dim, q_t.end());
      }
    }
  }
  probe(cache, r);
  if (keep_final)
    for (index_t layer = 0; layer < layers; ++layer) {
      const auto& view = cache.layer(layer);  // never evicted: every head holds the same tokens
      const auto elems = view.length * kv_heads * head_dim;
      r.final_k.emplace_back(view.k, view.k + elems);
      r.final_v.emplace_back(view.v, view.v + elems);
      r.final_meta.emplace_back(view.meta, view.meta + view.length);  // head 0's metadata
    }
  r.peak_bytes = memory.peak_bytes();
  r.formula_bytes = peak_formula<T, compressor_t>(shape, budget);
  r.seconds = seconds(clock_type::now() - start).count();
  return r;
}

/// The offline oracle: post-prefill compression. The full cache is built first, then each
/// layer is compressed once to `budget` with the same scorer (what kvpress-style presses do;
/// its peak is the full cache). The probe queries are the full run's.
template <class T, class Scorer>
run_result<T> run_post_prefill(std::string name, Scorer scorer, index_t budget, const prompt& p,
                               const run_result<T>& full) {
  const auto start = clock_type::now();
  const auto layers = static_cast<index_t>(full.final_k.size());
  const index_t tokens = p.num_tokens();
  video_compressor<T, Scorer> cache({layers, kv_heads, q_heads, head_dim, /*max_chunk=*/tokens},
                                    {.scorer = scorer, .budget = {budget}, .structure = p.structure()});
  for (index_t layer = 0; layer < layers; ++layer) {
    cache.append(layer, as_tensor(full.final_k[layer], kv_heads), as_tensor(full.final_v[layer], kv_heads),
                 full.final_meta[layer]);
    cache.compress(layer);
  }
  run_result<T> r;
  r.name = std::move(name);
  r.budget = budget;
  r.probe_queries = full.probe_queries;
  probe(cache, r);
  r.seconds = seconds(clock_type::now() - start).count();
  return r;
}

/// ||o - o_full|| / ||o_full|| of the probe outputs of one layer.
double relative_error(const matrix& o, const matrix& full) { return (o - full).norm() / full.norm(); }

std::string mib(std::size_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buffer;
}

/// Writes the full-cache run as a K/V dump (tools/fidelity/kv_dump.hpp's format, float32):
/// per layer K and V (tokens, kv_heads, head_dim) after M-RoPE, Q (tokens, q_heads,
/// head_dim), and the question tokens' queries as probes (layers, questions, q_heads, dim).
template <class T>
void write_dump(const std::string& dir, const prompt& p, const run_result<T>& full) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const auto as_float = [](const std::vector<T>& x) {
    return std::vector<float>(x.begin(), x.end());
  };
  const auto layers = static_cast<index_t>(full.final_k.size()), n = p.num_tokens();
  std::ofstream manifest(fs::path(dir) / "manifest.txt");
  manifest << "kvcap-dump 1\n# SEMI-REAL: real pixels, untrained seeded projections (examples/video_prefill)\n"
           << "layers " << layers << "\nkv_heads " << kv_heads << "\nq_heads " << q_heads << "\nhead_dim "
           << head_dim << "\nsegment text " << p.segments[0].num_tokens() << " protected\nsegment video "
           << p.segments[1].geometry.frames << ' ' << p.segments[1].geometry.rows << ' ' << p.segments[1].geometry.cols
           << "\nsegment text " << p.segments[2].num_tokens() << " protected\n";
  std::vector<float> probes;
  for (index_t layer = 0; layer < layers; ++layer) {
    const std::string l = std::to_string(layer);
    kvcap_tools::write_npy((fs::path(dir) / ("k" + l + ".npy")).string(), "<f4", {n, kv_heads, head_dim},
                           as_float(full.final_k[layer]).data());
    kvcap_tools::write_npy((fs::path(dir) / ("v" + l + ".npy")).string(), "<f4", {n, kv_heads, head_dim},
                           as_float(full.final_v[layer]).data());
    kvcap_tools::write_npy((fs::path(dir) / ("q" + l + ".npy")).string(), "<f4", {n, q_heads, head_dim},
                           as_float(full.all_queries[layer]).data());
    manifest << "k " << l << " k" << l << ".npy\nv " << l << " v" << l << ".npy\nq " << l << " q" << l << ".npy\n";
    const auto q = as_float(full.probe_queries[layer]);
    probes.insert(probes.end(), q.begin(), q.end());
  }
  kvcap_tools::write_npy((fs::path(dir) / "probes.npy").string(), "<f4", {layers, question_tokens, q_heads, head_dim},
                         probes.data());
  manifest << "probes probes.npy\n";
}

// ---- The whole run, for storage type T ------------------------------------------------------------
template <class T>
int run(const options& o, const video& v, const char* type_name, clock_type::time_point start) {
  const toy_model model = make_model(o.layers);
  const prompt p = make_prompt(v, model);
  const index_t budget = budget_tokens(o.budget, p.video_tokens);

  // Frame-aligned chunks: one bulk pass of up to `budget` tokens, then chunk_frames frames
  // at a time (the planner cuts at frame and segment boundaries).
  const index_t max_chunk = o.chunk_frames * v.frame_tokens();
  const auto chunks = kvcap::plan_chunks(p.structure(), kvcap::chunk_schedule::hybrid(budget, max_chunk));

  std::printf("prompt    : %ld system (protected) + %ld video + %ld question (protected) = %ld tokens\n",
              system_tokens, p.video_tokens, question_tokens, p.num_tokens());
  std::printf("model     : %ld layers, %ld q-heads / %ld kv-heads, head_dim %ld, M-RoPE (t,h,w), K/V stored as %s\n",
              o.layers, q_heads, kv_heads, head_dim, type_name);
  std::printf("schedule  : hybrid, %zu chunks: bulk %ld tokens, then up to %ld (%ld frame%s) per chunk\n",
              chunks.size(), chunks.front().size(), max_chunk, o.chunk_frames, o.chunk_frames > 1 ? "s" : "");
  std::printf("budget    : %ld tokens per layer (%s = %.1f%% of the video tokens), scorer %s\n\n", budget,
              o.budget.c_str(), 100.0 * static_cast<double>(budget) / static_cast<double>(p.video_tokens),
              o.scorer.c_str());

  // The uncompressed reference: budget = the whole prompt, so nothing is ever evicted.
  std::vector<run_result<T>> runs;
  runs.push_back(run_prefill<T>("full cache", kvcap::scorers::key_norm{}, p.num_tokens(), p, model, chunks,
                                max_chunk, /*keep_final=*/true));
  if (!o.dump.empty()) {
    write_dump(o.dump, p, runs.front());
    std::printf("dump      : wrote %s (full-cache K, V, Q of %ld tokens, %ld layers)\n", o.dump.c_str(),
                p.num_tokens(), o.layers);
    if (o.dump_only) return 0;
  }
  with_scorer(o.scorer, [&](auto scorer) {
    runs.push_back(run_prefill<T>("kvcap " + o.scorer, scorer, budget, p, model, chunks, max_chunk, false));
    return 0;
  });
  for (const std::string baseline : {"recency", "random"})
    if (baseline != o.scorer)
      with_scorer(baseline, [&](auto scorer) {
        runs.push_back(
            run_prefill<T>("kvcap " + baseline + " (baseline)", scorer, budget, p, model, chunks, max_chunk, false));
        return 0;
      });
  with_scorer(o.scorer, [&](auto scorer) {
    runs.push_back(run_post_prefill<T>("post-prefill " + o.scorer + " (offline)", scorer, budget, p, runs.front()));
    return 0;
  });
  const run_result<T>& full = runs[0];
  const run_result<T>& online = runs[1];

  // Memory: measured peak of kvcap's allocations against the formula.
  bool all_ok = true;
  std::printf("Peak KV memory (K + V + token_meta + workspace, measured by counting_resource):\n");
  std::printf("  %-34s %7s %16s %16s  %-8s %8s\n", "run", "budget", "measured B", "formula B", "check", "time");
  for (const auto& r : runs) {
    if (r.peak_bytes == 0) {
      std::printf("  %-34s %7ld %16s %16s  %-8s %7.2fs\n", r.name.c_str(), r.budget, "(full cache first)", "", "",
                  r.seconds);
      continue;
    }
    const bool ok = r.peak_bytes == r.formula_bytes;
    all_ok = all_ok && ok;
    std::printf("  %-34s %7ld %16zu %16zu  %-8s %7.2fs\n", r.name.c_str(), r.budget, r.peak_bytes, r.formula_bytes,
                ok ? "OK" : "MISMATCH", r.seconds);
  }
  std::printf("  formula: sum over layers of (budget + max_chunk) * kv_heads * (2*head_dim*%zu + %zu) + workspace\n",
              sizeof(T), sizeof(token_meta));
  std::printf("  full cache %s, kvcap %s: %.2fx less peak KV memory\n", mib(full.peak_bytes).c_str(),
              mib(online.peak_bytes).c_str(),
              static_cast<double>(full.peak_bytes) / static_cast<double>(online.peak_bytes));
  // kvcap's peak does not depend on the video length; the full cache grows linearly with it.
  const index_t hour_tokens = system_tokens + 3600 * v.frame_tokens() + question_tokens;
  const kvcap::host::compressor_shape shape{o.layers, kv_heads, q_heads, head_dim, max_chunk};
  std::printf("  by the formula, 1 h of this video at 1 frame/s (%ld tokens): full cache %s, kvcap %s\n\n",
              hour_tokens, mib(peak_formula<T, video_compressor<T, kvcap::scorers::key_norm>>(shape, hour_tokens)).c_str(),
              mib(online.formula_bytes).c_str());

  // Quality: probe outputs against the full cache, per layer.
  std::printf("Probe error: the %ld question tokens attend (non-causally) over each layer's final cache;\n"
              "relative L2 error ||o - o_full|| / ||o_full||, each run with its own queries (errors of\n"
              "earlier layers flow into later ones through the residual stream):\n",
              question_tokens);
  std::printf("  %-34s", "run");
  for (index_t l = 0; l < o.layers; ++l) std::printf("  %9s", ("layer " + std::to_string(l)).c_str());
  std::printf("\n");
  for (std::size_t i = 1; i < runs.size(); ++i) {
    std::printf("  %-34s", runs[i].name.c_str());
    for (index_t l = 0; l < o.layers; ++l)
      std::printf("  %9.4f", relative_error(runs[i].probe_outputs[l], full.probe_outputs[l]));
    std::printf("\n");
  }
  std::printf("  (untrained attention is broad, so a uniform random sample is a strong baseline here;\n"
              "  see examples/README.md before reading these numbers as a ranking of scorers)\n");
  std::printf("\nwall time %.1f s (decode, tokenise and %zu prefills)\n", seconds(clock_type::now() - start).count(),
              runs.size());
  if (!all_ok) std::printf("MISMATCH: measured peak differs from the formula\n");
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = clock_type::now();
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const std::exception& e) {
    if (*e.what()) std::fprintf(stderr, "error: %s\n\n", e.what());
    std::fputs(usage, *e.what() ? stderr : stdout);
    return *e.what() ? 2 : 0;
  }
  try {
    std::printf("kvcap video_prefill: KV cache kept at a budget during chunked prefill of a video\n");
    std::printf("SEMI-REAL: real pixels (real spatial and temporal redundancy), UNTRAINED seeded random\n"
                "projections. The errors compare scorers on the same toy model; they are not a model's accuracy.\n\n");
    std::printf("machine   : %s, %u cores\n", cpu_model().c_str(), std::thread::hardware_concurrency());
    const video v = decode_video(o);
    std::printf("video     : %s (%ldx%ld), 1 frame in %ld, %ld frames decoded\n", o.video.c_str(),
                v.source_width, v.source_height, o.stride, v.frames);
    std::printf("tokens    : one per 28x28 px (14-px patches merged 2x2); scaled to %ldx%ld -> grid %ld rows x %ld "
                "cols = %ld tokens per frame\n",
                v.width_px(), v.height_px(), v.rows, v.cols, v.frame_tokens());
    return o.half ? run<Eigen::half>(o, v, "Eigen::half", start) : run<float>(o, v, "float", start);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
