// Compresses a short sequence through the installed headers and checks the budget held.
#include <kvcap.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  using namespace kvcap;
  constexpr index_t heads = 2, dim = 16, chunk = 8, budget = 12;
  host::compressor<float, layouts::nhd, scorers::key_norm, budgets::fixed_tokens> c(
      {.num_layers = 1, .num_kv_heads = heads, .num_q_heads = heads, .head_dim = dim, .max_chunk = chunk},
      {.budget = {.tokens = budget}});
  std::vector<float> k(chunk * heads * dim), v(k.size());
  std::vector<token_meta> meta(chunk);
  const structures::sequence prompt{.length = 40};
  for (const chunk_range r : plan_chunks(prompt, chunk_schedule::blockwise(chunk))) {
    for (index_t i = 0; i < static_cast<index_t>(k.size()); ++i)
      k[i] = std::sin(0.1f * (r.begin * 100 + i)), v[i] = std::cos(0.2f * i);
    for (index_t t = 0; t < r.size(); ++t) meta[t] = prompt.meta(r.begin + t);
    c.append(0, {k.data(), r.size(), heads, dim}, {v.data(), r.size(), heads, dim},
             std::span(meta).first(r.size()));
    c.compress(0);
    if (c.length(0) > budget) return 1;
  }
  std::printf("kvcap consumer: %lld tokens resident of %lld\n", static_cast<long long>(c.length(0)),
              static_cast<long long>(c.logical_length(0)));
  return c.length(0) == budget && c.logical_length(0) == 40 ? 0 : 1;
}
