// The engine against an independent reference, and kvcap inside it: logits equal to the
// numpy forward (tools/fidelity/smollm2_dump.py), chunked == one-shot prefill, and kvcap with
// a budget that holds the whole prompt == the full cache (logits and generated text).
// Needs the SmolLM2 weights (scripts/fetch_smollm2.sh); without them the program exits 77
// and ctest reports it Skipped.
#include <doctest/doctest.h>

#include <smollm2/engine.hpp>
#include <smollm2/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

using namespace smollm2;

struct reference {
  std::vector<std::int32_t> tokens;
  struct position {
    index_t pos;
    double lse;
    std::vector<std::pair<std::int32_t, float>> logits;  // top-5, then probes
  };
  std::vector<position> positions;
  double mean_nll = 0;
};

reference read_reference() {
  std::ifstream in(KVCAP_FIXTURE_DIR "/smollm2_logits.txt");
  REQUIRE(in.good());
  reference r;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (key == "tokens") {
      for (std::int32_t t; s >> t;) r.tokens.push_back(t);
    } else if (key == "pos") {
      reference::position p;
      std::string word;
      s >> p.pos >> word >> p.lse;
      while (s >> word) {
        if (word == "top" || word == "probe") continue;
        const auto colon = word.find(':');
        p.logits.emplace_back(std::stoi(word.substr(0, colon)), std::stof(word.substr(colon + 1)));
      }
      r.positions.push_back(p);
    } else if (key == "mean_nll") {
      s >> r.mean_nll;
    }
  }
  return r;
}

struct loaded {
  gguf::file file;
  model net;
  explicit loaded(const std::filesystem::path& p) : file(p), net(file) {}
};

const loaded& weights() {
  static const std::optional<std::filesystem::path> path = find_weights();
  if (!path) {
    std::cout << "SmolLM2 weights not found (run scripts/fetch_smollm2.sh): skipped\n";
    std::exit(77);
  }
  static const loaded w(*path);
  return w;
}

/// All logits of a prompt (rows = positions), prefilled in chunks of `chunk` through `store`.
row_matrix prompt_logits(const model& net, kv_store& store, std::span<const std::int32_t> tokens, index_t chunk) {
  std::vector<kvcap::token_meta> meta;
  text_meta(0, static_cast<index_t>(tokens.size()), false, meta);
  engine e(net, chunk, static_cast<index_t>(tokens.size()) + chunk);
  row_matrix logits(static_cast<index_t>(tokens.size()), net.cfg().vocab);
  e.prefill(tokens, meta, store, chunk, nullptr, [&](index_t first, const row_matrix& hidden) {
    logits.middleRows(first, hidden.rows()) = hidden * net.output_weights().transpose();
  });
  return logits;
}

}  // namespace

TEST_CASE("the C++ forward matches the numpy reference's logits") {
  const model& net = weights().net;
  const reference ref = read_reference();
  REQUIRE(ref.tokens.size() == 160);
  full_cache full(net.cfg().kv_shape(), 160);
  const row_matrix logits = prompt_logits(net, full, ref.tokens, 160);
  double nll = 0;
  for (index_t p = 0; p + 1 < 160; ++p) {
    const float top = logits.row(p).maxCoeff();
    nll += top + std::log((logits.row(p).array() - top).exp().cast<double>().sum()) - logits(p, ref.tokens[p + 1]);
  }
  CHECK(nll / 159 == doctest::Approx(ref.mean_nll).epsilon(1e-4));
  for (const auto& p : ref.positions) {
    CAPTURE(p.pos);
    Eigen::Index best;
    logits.row(p.pos).maxCoeff(&best);
    CHECK(best == p.logits[0].first);  // the reference's argmax
    for (const auto& [id, value] : p.logits) CHECK(logits(p.pos, id) == doctest::Approx(value).epsilon(1e-3).scale(1));
  }
}

TEST_CASE("chunked prefill without compression gives the logits of one-shot prefill") {
  const model& net = weights().net;
  const reference ref = read_reference();
  full_cache one(net.cfg().kv_shape(), 160), chunked(net.cfg().kv_shape(), 160);
  const row_matrix a = prompt_logits(net, one, ref.tokens, 160);
  for (const index_t chunk : {1, 7, 64}) {
    CAPTURE(chunk);
    full_cache c(net.cfg().kv_shape(), 160);
    const row_matrix b = prompt_logits(net, c, ref.tokens, chunk);
    CHECK((a - b).cwiseAbs().maxCoeff() < 1e-3f);  // float GEMMs of other shapes round differently
    CHECK((a - b).cwiseAbs().maxCoeff() / a.cwiseAbs().maxCoeff() < 2e-5f);
  }
}

TEST_CASE("kvcap with a budget that holds the prompt gives the full cache's logits and text") {
  const model& net = weights().net;
  const reference ref = read_reference();
  const index_t chunk = 32;
  full_cache full(net.cfg().kv_shape(), 160 + chunk);
  const row_matrix expected = prompt_logits(net, full, ref.tokens, chunk);
  for (const char* scorer : {"key_diff", "window", "recency"})
    for (const bool oracle : {false, true}) {
      CAPTURE(scorer);
      CAPTURE(oracle);
      compression_options o{.scorer = scorer, .budget = 160, .max_chunk = chunk, .oracle = oracle, .prompt_tokens = 160};
      const auto store = make_store(net.cfg().kv_shape(), o);
      const row_matrix got = prompt_logits(net, *store, ref.tokens, chunk);
      CHECK((got - expected).cwiseAbs().maxCoeff() == 0.0f);  // same kernel, same keys, same order
    }

  // Greedy text: full cache vs kvcap, prompt of 160 tokens, 12 new tokens.
  std::vector<kvcap::token_meta> meta;
  text_meta(0, 160, false, meta);
  engine e(net, chunk, 160 + chunk);
  full_cache f2(net.cfg().kv_shape(), 160 + chunk);
  const auto last_full = e.prefill(ref.tokens, meta, f2, chunk);
  const auto text_full = e.generate(f2, last_full, 160, 12);
  compression_options o{.scorer = "key_diff", .budget = 160 + 12, .max_chunk = chunk};
  const auto store = make_store(net.cfg().kv_shape(), o);
  const auto last = e.prefill(ref.tokens, meta, *store, chunk);
  CHECK(e.generate(*store, last, 160, 12) == text_full);
}

TEST_CASE("under a small budget the cache stays at the budget and positions continue from the logical index") {
  const model& net = weights().net;
  const reference ref = read_reference();
  std::vector<kvcap::token_meta> meta;
  text_meta(0, 160, false, meta);
  engine e(net, 32, 160 + 32);
  // recency keeps the newest tokens, so the decoded ones stay resident and can be checked.
  compression_options o{.scorer = "recency", .budget = 48, .max_chunk = 32};
  auto store = make_store(net.cfg().kv_shape(), o);
  const auto last = e.prefill(ref.tokens, meta, *store, 32);
  for (index_t l = 0; l < net.cfg().layers; ++l) CHECK(store->length(l) == 48);
  const auto text = e.generate(*store, last, 160, 4);
  CHECK(text.size() == 4);
  auto& kv = dynamic_cast<compressed_cache<kvcap::scorers::recency, kvcap::reducers::evict>&>(*store).kv();
  for (index_t l = 0; l < net.cfg().layers; ++l) {
    CHECK(kv.logical_length(l) == 164);  // 160 prompt tokens + 4 decoded, whatever was evicted
    const auto view = kv.layer(l);
    for (index_t i = 0; i < 4; ++i) CHECK(view.meta_at(view.length - 4 + i, 0).index == 160 + i);  // decoded tokens
    CHECK(view.meta_at(0, 0).index == 0);  // a sink
  }
  // Compression changed what the model saw: the last prompt token's logits differ from the full cache's.
  full_cache full(net.cfg().kv_shape(), 192);
  const auto last_full = e.prefill(ref.tokens, meta, full, 32);
  CHECK((net.logits(last_full) - net.logits(last)).cwiseAbs().maxCoeff() > 1e-2f);
}

TEST_CASE("head_adaptive budgets in the engine: heads keep different counts under the layer's total") {
  const model& net = weights().net;
  const reference ref = read_reference();
  const index_t chunk = 32, heads = net.cfg().kv_heads;
  std::vector<kvcap::token_meta> meta;
  text_meta(0, 160, false, meta);
  engine e(net, chunk, 160 + chunk);

  // A budget that holds the prompt changes nothing: the attention over per-head lengths
  // (layouts::varlen) gives the full cache's logits, online and in the oracle.
  full_cache full(net.cfg().kv_shape(), 160 + chunk);
  const row_matrix expected = prompt_logits(net, full, ref.tokens, chunk);
  for (const char* scorer : {"key_diff", "window"})
    for (const bool oracle : {false, true}) {
      CAPTURE(scorer);
      CAPTURE(oracle);
      const compression_options o{.scorer = scorer, .budget = 160, .max_chunk = chunk, .budget_policy = "head_adaptive",
                                  .oracle = oracle, .prompt_tokens = 160};
      const auto store = make_store(net.cfg().kv_shape(), o);
      CHECK((prompt_logits(net, *store, ref.tokens, chunk) - expected).cwiseAbs().maxCoeff() == 0.0f);
    }

  // Budget 48 per head on average, floor 0.2 · 48 = 9: each layer holds at most 3 · 48 tokens
  // in all, every head at least 9, and heads differ; decoding continues from the logical index.
  const compression_options o{.scorer = "key_diff", .budget = 48, .max_chunk = chunk, .budget_policy = "head_adaptive"};
  const auto store = make_store(net.cfg().kv_shape(), o);
  const auto last = e.prefill(ref.tokens, meta, *store, chunk);
  const auto& kv =
      dynamic_cast<compressed_cache<kvcap::scorers::key_diff, kvcap::reducers::evict, kvcap::budgets::head_adaptive>&>(
          *store)
          .kv();
  index_t layers_with_unequal_heads = 0;
  for (index_t l = 0; l < net.cfg().layers; ++l) {
    index_t total = 0, least = 160, most = 0;
    for (index_t h = 0; h < heads; ++h) {
      total += kv.length(l, h);
      least = std::min(least, kv.length(l, h));
      most = std::max(most, kv.length(l, h));
    }
    CAPTURE(l);
    CHECK(total == 48 * heads);
    CHECK(least >= 9);
    CHECK(store->length(l) == most);
    layers_with_unequal_heads += most > least;
  }
  CHECK(layers_with_unequal_heads > 0);
  CHECK(store->bytes() == store->formula_bytes());  // measured peak = formula, per-head bookkeeping included
  CHECK(e.generate(*store, last, 160, 4).size() == 4);
  for (index_t l = 0; l < net.cfg().layers; ++l) CHECK(kv.logical_length(l) == 164);

  // A floor of the whole budget leaves nothing to share: every head keeps its own best 48, as
  // with a uniform budget, and the logits of the whole prompt are the uniform store's, bit for bit.
  for (const char* scorer : {"key_diff", "snapkv"}) {
    CAPTURE(scorer);
    const auto every_head = make_store(net.cfg().kv_shape(), {.scorer = scorer, .budget = 48, .max_chunk = chunk});
    const auto floor_one = make_store(net.cfg().kv_shape(), {.scorer = scorer, .budget = 48, .max_chunk = chunk,
                                                             .budget_policy = "head_adaptive", .head_floor = 1.0});
    const row_matrix want = prompt_logits(net, *every_head, ref.tokens, chunk);
    CHECK((prompt_logits(net, *floor_one, ref.tokens, chunk) - want).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((want - expected).cwiseAbs().maxCoeff() > 1e-2f);  // compression did change the logits
  }

  // The uniform store's peak equals its formula too, and is smaller by the per-head bookkeeping and
  // the wider selection workspace.
  const auto uniform = make_store(net.cfg().kv_shape(), {.scorer = "key_diff", .budget = 48, .max_chunk = chunk});
  e.prefill(ref.tokens, meta, *uniform, chunk);
  CHECK(uniform->bytes() == uniform->formula_bytes());
  CHECK(uniform->bytes() < store->bytes());
}

TEST_CASE("an oracle replayed from a full cache equals an oracle prefilled through kvcap") {
  const model& net = weights().net;
  const reference ref = read_reference();
  const std::span<const std::int32_t> prompt(ref.tokens.data(), 144), continuation(ref.tokens.data() + 144, 16);
  std::vector<kvcap::token_meta> meta;
  text_meta(0, 144, false, meta);
  const index_t chunk = 32;
  engine e(net, chunk, 144 + 2 * chunk);
  for (const char* scorer : {"key_diff", "window+key_diff"}) {
    CAPTURE(scorer);
    const compression_options o{.scorer = scorer, .budget = 64, .max_chunk = chunk, .oracle = true, .prompt_tokens = 144};
    const auto direct = make_store(net.cfg().kv_shape(), o);
    const auto last = e.prefill(prompt, meta, *direct, chunk);

    full_cache full(net.cfg().kv_shape(), 144);
    full.record_windows(o.window);
    const auto last_full = e.prefill(prompt, meta, full, chunk);
    const auto replayed = make_store(net.cfg().kv_shape(), o);
    replayed->replay(full);

    for (index_t l = 0; l < net.cfg().layers; ++l) {
      CHECK(direct->length(l) == 64);
      CHECK(replayed->length(l) == 64);
    }
    CHECK((last - last_full).cwiseAbs().maxCoeff() == 0.0f);  // no compression before the end: the full prefill
    CHECK(e.continuation_nll(*direct, last, 144, continuation) ==
          e.continuation_nll(*replayed, last_full, 144, continuation));
  }
}

TEST_CASE("@question window scorers score every chunk by the question's pre-pass queries") {
  const model& net = weights().net;
  const reference ref = read_reference();
  const store_shape shape = net.cfg().kv_shape();
  const index_t n = 160, q = 16, chunk = 32;  // the first 16 tokens stand for the system turn, the last 16 for the question
  std::vector<kvcap::token_meta> meta;
  text_meta(0, n, false, meta);
  engine e(net, chunk, n + chunk);

  std::vector<std::int32_t> ids(ref.tokens.begin(), ref.tokens.begin() + q);
  ids.insert(ids.end(), ref.tokens.end() - q, ref.tokens.end());
  std::vector<kvcap::token_meta> pre_meta(meta.begin(), meta.begin() + q);
  pre_meta.insert(pre_meta.end(), meta.end() - q, meta.end());
  const query_windows question = e.question_prepass(ids, pre_meta, q);

  // The full prompt's own last 16 queries: layer 0's depend only on the token and its
  // position, so the pre-pass has them (to GEMM rounding); deeper layers' also attend to the
  // 128 tokens the pre-pass skips, and differ.
  full_cache full(shape, n);
  full.record_windows(q);
  e.prefill(ref.tokens, meta, full, chunk);
  const auto difference = [&](index_t layer) {
    const auto a = question[layer], b = full.window(layer);
    REQUIRE(a.num_tokens == q);
    REQUIRE(b.num_tokens == q);
    float diff = 0, scale = 0;
    for (index_t i = 0; i < q * a.num_heads * a.head_dim; ++i)
      diff = std::max(diff, std::abs(a.data[i] - b.data[i])), scale = std::max(scale, std::abs(b.data[i]));
    return diff / scale;
  };
  CHECK(difference(0) < 1e-5f);
  CHECK(difference(net.cfg().layers - 1) > 1e-2f);

  // Online, every chunk is compressed by the question's window: the budget holds, and the
  // kept sets are not the ones the chunk's own tail picks.
  const auto kept = [&](const char* scorer) {
    const auto store = make_store(shape, {.scorer = scorer, .budget = 48, .max_chunk = chunk, .question = &question});
    e.prefill(ref.tokens, meta, *store, chunk);
    using window_cache = compressed_cache<kvcap::scorers::observation_window, kvcap::reducers::evict>;
    const auto& kv = dynamic_cast<const window_cache&>(*store).kv();
    std::vector<std::int64_t> out;
    for (index_t l = 0; l < net.cfg().layers; ++l) {
      REQUIRE(store->length(l) == 48);
      for (index_t h = 0; h < shape.kv_heads; ++h)
        for (index_t t = 0; t < 48; ++t) out.push_back(kv.layer(l).meta_at(t, h).index);
    }
    return out;
  };
  CHECK(kept("window@question") != kept("window"));

  // A budget that holds the prompt changes nothing, whichever window scores it.
  const auto whole = make_store(shape, {.scorer = "snapkv@question", .budget = n, .max_chunk = chunk, .question = &question});
  full_cache uncompressed(shape, n);
  const Eigen::RowVectorXf last = e.prefill(ref.tokens, meta, *whole, chunk);
  CHECK((last - e.prefill(ref.tokens, meta, uncompressed, chunk)).cwiseAbs().maxCoeff() == 0.0f);

  CHECK_THROWS_WITH(make_store(shape, {.scorer = "snapkv@question"}),
                    doctest::Contains("--scorer snapkv@question: scores by the question's queries, and this task has none"));
  CHECK_THROWS_WITH(make_store(shape, {.scorer = "key_diff@question", .question = &question}),
                    doctest::Contains("--scorer key_diff@question: only window scorers score by the question"));
  CHECK_THROWS_WITH(e.question_prepass(ids, pre_meta, 0), doctest::Contains("question_tokens 0, expected 1..32"));
}

TEST_CASE("bad options are rejected with the argument and what was expected") {
  const store_shape s = weights().net.cfg().kv_shape();
  CHECK_THROWS_WITH(make_store(s, {.scorer = "magic"}), doctest::Contains("--scorer magic: unknown, expected one of recency"));
  CHECK_THROWS_WITH(make_store(s, {.reducer = "fold"}), doctest::Contains("--reducer fold: unknown, expected evict or merge"));
  CHECK_THROWS_WITH(make_store(s, {.budget = 0}), doctest::Contains("--budget 0: expected > 0"));
  CHECK_THROWS_WITH(make_store(s, {.budget_policy = "pyramid"}),
                    doctest::Contains("--budget-policy pyramid: unknown, expected uniform or head_adaptive"));
  CHECK_THROWS_WITH(make_store(s, {.budget_policy = "head_adaptive", .head_floor = 1.5}),
                    doctest::Contains("--head-floor 1.500000: expected a fraction in [0, 1]"));
  const auto online = make_store(s, {.scorer = "key_diff"});
  CHECK_THROWS_WITH(online->replay(full_cache(s, 8)), doctest::Contains("replay is for oracle stores"));
  full_cache tiny(s, 4);
  std::vector<float> kv(8 * 3 * 64, 0.5f);
  std::vector<kvcap::token_meta> meta;
  text_meta(0, 8, false, meta);
  CHECK_THROWS_WITH(tiny.append(0, {kv.data(), 8, 3, 64}, {kv.data(), 8, 3, 64}, meta),
                    doctest::Contains("8 tokens do not fit its capacity of 4 tokens"));
  CHECK(tiny.length(0) == 0);
}
