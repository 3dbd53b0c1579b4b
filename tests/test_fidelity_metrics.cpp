// tools/fidelity/metrics.hpp: the attention-fidelity measures of the harness, on hand-computed
// cases, including a per-head layout whose heads keep different counts.
#include <doctest/doctest.h>

#include <kvcap.hpp>
#include <kvcap/budgets/head_adaptive.hpp>
#include <kvcap/layouts/varlen.hpp>

#include <vector>

#include "fidelity/metrics.hpp"

namespace {
using namespace kvcap;

/// 4 tokens, 2 kv-heads of dim 1; values 1, 2, 3, 4 in both heads. A zero probe attends
/// uniformly (0.25 each), so the full output is 2.5 in each head.
struct four_tokens {
  std::vector<Eigen::MatrixXf> full_k, full_v;
  std::vector<std::vector<Eigen::VectorXf>> probes{{Eigen::VectorXf::Zero(1), Eigen::VectorXf::Zero(1)}};
  std::vector<token_meta> meta;  // the 4 tokens' metadata, as a text prompt
  explicit four_tokens(const std::vector<float>& k) {  // k: (tok, head) with dim 1
    for (index_t t = 0; t < 4; ++t) meta.push_back(structures::sequence{.length = 4}.meta(t));
    for (index_t h = 0; h < 2; ++h) {
      Eigen::MatrixXf mk(4, 1), mv(4, 1);
      for (index_t t = 0; t < 4; ++t) mk(t, 0) = k[t * 2 + h], mv(t, 0) = static_cast<float>(t + 1);
      full_k.push_back(mk), full_v.push_back(mv);
    }
  }
};
}  // namespace

TEST_CASE("fidelity of a per-head cache reads each head's own kept tokens") {
  // key_norm keeps low |k|. Head 0 keys 0.1 0.2 0.3 0.4, head 1 keys 1 5 6 7; head_adaptive
  // with 2 tokens per head on average (4 in all) and a floor of 1: both heads keep t0, the
  // other 2 go to head 0's t1, t2 (|k| 0.2, 0.3 beat head 1's 5). Head 0 keeps {0, 1, 2},
  // head 1 keeps {0}: their outputs are 2 and 1 against 2.5, their mass 0.75 and 0.25.
  const std::vector<float> k = {0.1f, 1, 0.2f, 5, 0.3f, 6, 0.4f, 7}, v = {1, 1, 2, 2, 3, 3, 4, 4};
  const four_tokens full(k);
  host::compressor<float, layouts::varlen, scorers::key_norm, budgets::head_adaptive> c(
      {.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1, .max_chunk = 4},
      {.budget = {.tokens = 2, .min_head_fraction = 0.5}});
  c.append(0, {k.data(), 4, 2, 1}, {v.data(), 4, 2, 1}, full.meta);
  c.compress(0);
  REQUIRE(c.length(0, 0) == 3);
  REQUIRE(c.length(0, 1) == 1);

  kvcap_tools::fidelity f;
  kvcap_tools::accumulate_fidelity(f, full.full_k, full.full_v, full.probes, c.layer(0), /*size_bias=*/false,
                                   /*top_k=*/4);
  CHECK(f.samples == 2);
  // sqrt(((2 − 2.5)² + (1 − 2.5)²) / (2.5² + 2.5²)) = sqrt(2.5 / 12.5)
  CHECK(f.relative_error() == doctest::Approx(std::sqrt(0.2)).epsilon(1e-6));
  CHECK(f.mass_recall() == doctest::Approx((0.75 + 0.25) / 2).epsilon(1e-6));
  CHECK(f.topk_overlap() == doctest::Approx((3.0 / 4 + 1.0 / 4) / 2).epsilon(1e-12));  // all 4 are the top 4
}

TEST_CASE("fidelity of a uniform cache: an untouched cache is exact, a merged slot's size biases its logit") {
  const std::vector<float> k = {0, 0, 0, 0, 0, 0, 0, 0}, v = {1, 1, 2, 2, 3, 3, 4, 4};
  const four_tokens full(k);
  using comp = host::compressor<float, layouts::hnd, scorers::key_norm, budgets::fixed_tokens>;
  comp whole({.num_layers = 1, .num_kv_heads = 2, .num_q_heads = 2, .head_dim = 1, .max_chunk = 4},
             {.budget = {.tokens = 4}});
  whole.append(0, {k.data(), 4, 2, 1}, {v.data(), 4, 2, 1}, full.meta);
  kvcap_tools::fidelity f;
  kvcap_tools::accumulate_fidelity(f, full.full_k, full.full_v, full.probes, whole.layer(0), false, 4);
  CHECK(f.relative_error() == doctest::Approx(0.0));
  CHECK(f.mass_recall() == doctest::Approx(1.0));

  // Size bias: a view written by hand, two slots standing for t0 (merged with t1, t2: size
  // 3, value 2, their mean) and t3. Logits log 3 and 0 weigh them 3/4 and 1/4: output
  // 0.75 · 2 + 0.25 · 4 = 2.5, exact; without the bias 3.
  std::vector<float> k2 = {0, 0, 0, 0}, v2 = {2, 4, 2, 4};  // HND: (head, tok)
  std::vector<token_meta> m2 = {full.meta[0], full.meta[3], full.meta[0], full.meta[3]};
  m2[0].size = m2[2].size = 3;
  const layer_view<float, layouts::hnd> two{k2.data(), v2.data(), m2.data(), make_mapping<layouts::hnd>(2, 2, 1), 2};
  kvcap_tools::fidelity biased, unbiased;
  kvcap_tools::accumulate_fidelity(biased, full.full_k, full.full_v, full.probes, two, true, 4);
  kvcap_tools::accumulate_fidelity(unbiased, full.full_k, full.full_v, full.probes, two, false, 4);
  CHECK(biased.relative_error() == doctest::Approx(0.0).epsilon(1e-6));
  CHECK(unbiased.relative_error() == doctest::Approx(0.5 / 2.5).epsilon(1e-6));  // output 3 against 2.5
  CHECK(biased.mass_recall() == doctest::Approx(0.5));  // t0 and t3 of the full attention
}
