// engine_loop.cpp — the smallest complete use of kvcap: an engine's chunked prefill over
// a video prompt with every layer's cache held at a budget. README.md quotes the part
// between the example-begin / example-end markers; this file is compiled and run by the
// test suite so the README snippet cannot rot.
//
// The "model" here is a stand-in (seeded random K/V/Q, a plain attention): the point is
// the call sequence an engine makes. examples/video_prefill.cpp does it on real pixels.

#include <kvcap.hpp>

#include <cstdio>
#include <exception>
#include <random>
#include <vector>

int main() try {
  constexpr kvcap::index_t layers = 4, kv_heads = 2, q_heads = 8, dim = 64;
  constexpr kvcap::index_t budget = 1024, max_chunk = 784;
  std::mt19937 rng(7);
  std::normal_distribution<float> gauss;

  // example-begin engine-loop
  using namespace kvcap;
  // The prompt: a protected system prompt, 6 video frames of 28×28 tokens, a protected question.
  const structures::segment prompt_segments[] = {structures::segment::text(32, /*is_protected=*/true),
                                                 structures::segment::video(6, 28, 28),
                                                 structures::segment::text(24, /*is_protected=*/true)};
  const structures::mixed prompt{prompt_segments};

  // Policies chosen at compile time: fp16 storage, HND layout, KeyDiff scores, token budget.
  using compressor = host::compressor<Eigen::half, layouts::hnd, scorers::key_diff, budgets::fixed_tokens,
                                      reducers::evict, structures::mixed>;
  compressor kv({.num_layers = layers, .num_kv_heads = kv_heads, .num_q_heads = q_heads, .head_dim = dim,
                 .max_chunk = max_chunk},
                {.budget = {.tokens = budget}, .structure = prompt});  // all memory allocated here

  // Frame-aligned chunks (one 784-token frame each), hybrid: a first bulk pass up to the budget.
  const std::vector<chunk_range> chunks = plan_chunks(prompt, chunk_schedule::hybrid(budget, max_chunk));
  const index_t largest = max_chunk_size(chunks);  // the bulk pass may exceed max_chunk

  std::vector<Eigen::half> q(largest * q_heads * dim), k(largest * kv_heads * dim), v(k.size());
  std::vector<token_meta> meta(largest);
  std::vector<float> out(largest * q_heads * dim);
  host::attention_scratch scratch;

  for (const chunk_range chunk : chunks) {
    for (index_t t = 0; t < chunk.size(); ++t) meta[t] = prompt.meta(chunk.begin + t);
    for (index_t layer = 0; layer < layers; ++layer) {
      for (auto* x : {&q, &k, &v})  // the engine's projections + RoPE would go here
        for (auto& e : *x) e = Eigen::half(gauss(rng));
      const kv_tensor<const Eigen::half> ck{k.data(), chunk.size(), kv_heads, dim};  // (tok, head, dim)
      const kv_tensor<const Eigen::half> cv{v.data(), chunk.size(), kv_heads, dim};
      const kv_tensor<const Eigen::half> cq{q.data(), chunk.size(), q_heads, dim};

      kv.append(layer, ck, cv, std::span(meta).first(chunk.size()));      // resident ≤ budget + chunk
      host::reference_attention(kv.layer(layer), cq, /*causal=*/true, scratch, out.data());  // engine's kernel
      kv.compress(layer);                                                  // back to ≤ budget
    }
  }
  // example-end engine-loop

  const host::memory_stats m = kv.memory();
  std::printf("prompt %lld tokens, resident %lld per layer, peak KV %zu bytes (storage %zu + workspace %zu)\n",
              static_cast<long long>(prompt.num_tokens()), static_cast<long long>(kv.length(0)),
              m.total_bytes(), m.storage_bytes, m.workspace_bytes);
  return kv.length(0) == budget && kv.logical_length(0) == prompt.num_tokens() ? 0 : 1;
} catch (const std::exception& e) {  // kvcap::error names the argument and what it expected
  std::fprintf(stderr, "engine_loop: %s\n", e.what());
  return 2;
}
