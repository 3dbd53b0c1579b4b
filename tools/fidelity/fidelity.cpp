// tools/fidelity/fidelity.cpp — replays K/V dumps through kvcap with many policies and
// measures how close the compressed cache's attention stays to the full cache.
//
//   fidelity --dump DIR [--dump DIR ...] [--label DIR=real|semi-real|synthetic]
//            [--budgets 0.05,0.1,0.25] [--budget-tokens 1024,...] [--chunks aligned:784,fixed:784,...]
//            [--scorers key_diff,window,...] [--modes online,oracle] [--reducers evict,merge]
//            [--budget-policies uniform,head_adaptive,pyramid] [--head-floor 0.2] [--pyramid-ratio 0.5]
//            [--window 32] [--top-k 32] [--out results.csv]
//
// Replay: for every chunk of the prompt (hybrid schedule: a bulk pass up to the budget,
// then chunks), every layer gets append → compress, exactly the engine loop, with the
// dump's K/V (RoPE already applied). Online compresses after every chunk; the oracle
// (post-prefill compression, kvpress' setting) appends everything with a budget of the
// whole prompt and compresses once at the end with the same policies. Query-aware scorers
// use the last `window` queries of each chunk (oracle: of the prompt) from the dump's
// per-layer queries; with "@question" after their name (window@question), the dump's
// pre-pass probes instead (prepass_probes: the question's queries as an engine can compute
// them before the prefill), for every chunk and for the oracle. Probes are the dump's probe
// queries, placed after the prompt.
//
// Budget policies share out the same mean tokens per (layer, kv-head), the budget:
//   uniform        every layer and head keeps the budget (budgets::fixed_tokens)
//   head_adaptive  a layer's heads share budget · kv_heads by score, each keeping at least
//                  ⌊budget · head-floor⌋ (budgets::head_adaptive on layouts::varlen, AdaKV-style)
//   pyramid        layers keep linearly less, the last pyramid-ratio times the first, summing
//                  to budget · layers (budgets::pyramid_layers, PyramidKV's shape)
// The oracle applies the same policy once, after the whole prompt: compress_to each layer's
// share (a layout or schedule that holds the whole prompt first). The hybrid schedule's bulk
// pass is the smallest layer's share.
// One CSV row per (dump, scorer, reducer, budget policy, mode, chunking, budget).

#include <kvcap.hpp>
#include <kvcap/budgets/head_adaptive.hpp>
#include <kvcap/layouts/varlen.hpp>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "kv_dump.hpp"
#include "metrics.hpp"

namespace {

using kvcap::index_t;
using namespace kvcap;

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// A dump converted to float, NHD per layer, plus the full cache's per-head matrices.
struct replay_source {
  std::string name, data_label;
  kvcap_tools::kv_dump dump;
  std::vector<std::vector<float>> k, v, q;             // (layer) of (tokens, heads, dim)
  std::vector<float> prepass;                          // (layers, probes, q_heads, dim); empty if absent
  std::vector<std::vector<Eigen::MatrixXf>> full_k, full_v;  // (layer, kv_head) of (N, dim)
  std::vector<std::vector<std::vector<Eigen::VectorXf>>> probes;  // (layer, probe, q_head)
  index_t protected_tokens = 0;
};

replay_source load(const std::string& dir, const std::string& label) {
  replay_source s;
  s.name = std::filesystem::path(dir).filename().string();
  s.data_label = label;
  s.dump = kvcap_tools::read_kv_dump(dir);
  const auto& d = s.dump;
  if (!d.has_probes()) throw std::runtime_error(dir + ": the fidelity harness needs probe queries ('probes' line)");
  const index_t n = d.num_tokens();
  const auto to_float = [](const kvcap_tools::npy_array& a) {
    std::vector<float> out(static_cast<std::size_t>(a.size()));
    for (index_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>(a.at(i));
    return out;
  };
  if (d.has_prepass_probes()) s.prepass = to_float(d.prepass_probes);
  for (index_t l = 0; l < d.layers; ++l) {
    s.k.push_back(to_float(d.k[l]));
    s.v.push_back(to_float(d.v[l]));
    if (d.has_queries()) s.q.push_back(to_float(d.q[l]));
    std::vector<Eigen::MatrixXf> fk, fv;
    for (index_t h = 0; h < d.kv_heads; ++h) {
      Eigen::MatrixXf mk(n, d.head_dim), mv(n, d.head_dim);
      for (index_t t = 0; t < n; ++t)
        for (index_t i = 0; i < d.head_dim; ++i)
          mk(t, i) = s.k[l][(t * d.kv_heads + h) * d.head_dim + i], mv(t, i) = s.v[l][(t * d.kv_heads + h) * d.head_dim + i];
      fk.push_back(std::move(mk)), fv.push_back(std::move(mv));
    }
    s.full_k.push_back(std::move(fk)), s.full_v.push_back(std::move(fv));
    std::vector<std::vector<Eigen::VectorXf>> layer_probes;
    const index_t num_probes = d.probes.shape[1];
    for (index_t p = 0; p < num_probes; ++p) {
      std::vector<Eigen::VectorXf> heads;
      for (index_t qh = 0; qh < d.q_heads; ++qh) {
        Eigen::VectorXf q(d.head_dim);
        for (index_t i = 0; i < d.head_dim; ++i)
          q(i) = static_cast<float>(d.probes.at(((l * num_probes + p) * d.q_heads + qh) * d.head_dim + i));
        heads.push_back(q);
      }
      layer_probes.push_back(std::move(heads));
    }
    s.probes.push_back(std::move(layer_probes));
  }
  for (const auto& m : d.meta) s.protected_tokens += m.is_protected;
  return s;
}

/// "window@question": a window scorer scored by the dump's pre-pass probes.
constexpr std::string_view question_suffix = "@question";
bool by_question(const std::string& scorer) { return scorer.ends_with(question_suffix); }
std::string base_scorer(const std::string& scorer) {
  return scorer.substr(0, scorer.size() - (by_question(scorer) ? question_suffix.size() : 0));
}

struct config {
  std::string scorer, reducer, mode, chunking;
  index_t chunk = 784, budget = 0, window = 32, top_k = 32;
  double budget_frac = 0;
  std::string budget_policy = "uniform";
  double head_floor = 0.2, pyramid_ratio = 0.5;
};

/// Tokens per kv-head each layer keeps under the config's budget policy (head_adaptive: on
/// average over its heads).
std::vector<index_t> layer_targets(const replay_source& s, const config& c) {
  const index_t layers = s.dump.layers;
  std::vector<index_t> targets(static_cast<std::size_t>(layers), c.budget);
  if (c.budget_policy == "pyramid") {
    const budgets::pyramid_layers p{.total_tokens = c.budget * layers, .last_to_first = c.pyramid_ratio};
    const cache_shape shape{layers, s.dump.kv_heads, s.dump.head_dim, sizeof(float)};
    for (index_t l = 0; l < layers; ++l) targets[l] = p.tokens_for(l, shape);
  } else if (c.budget_policy != "uniform" && c.budget_policy != "head_adaptive") {
    throw std::runtime_error("unknown budget policy '" + c.budget_policy + "' (expected uniform, head_adaptive or pyramid)");
  }
  return targets;
}

struct outcome {
  kvcap_tools::fidelity f;
  std::size_t peak_bytes = 0;
  double seconds = 0;
  std::vector<std::vector<std::int64_t>> kept;  // (layer · kv_heads + head) kept logical indices, ascending
};

/// Share of the oracle's kept tokens that the online run kept too, over all (layer, head).
double kept_overlap(const outcome& online, const outcome& oracle) {
  std::size_t shared = 0, total = 0;
  for (std::size_t i = 0; i < oracle.kept.size(); ++i) {
    std::vector<std::int64_t> both;
    std::set_intersection(online.kept[i].begin(), online.kept[i].end(), oracle.kept[i].begin(), oracle.kept[i].end(),
                          std::back_inserter(both));
    shared += both.size(), total += oracle.kept[i].size();
  }
  return total > 0 ? static_cast<double>(shared) / static_cast<double>(total) : 1.0;
}

/// Chunks of the prompt: aligned to the structure (frames, rows, segments) or fixed-size.
std::vector<chunk_range> plan(const replay_source& s, const config& c, index_t budget) {
  const auto schedule = chunk_schedule::hybrid(budget, c.chunk);
  if (c.chunking == "aligned") return plan_chunks(s.dump.structure(), schedule);
  return plan_chunks(structures::sequence{.length = s.dump.num_tokens()}, schedule);
}

/// One run: online, `budget` is the policy and every chunk is compressed to it; oracle,
/// `budget` holds the whole prompt and each layer is compressed once to `targets[layer]`.
template <class Scorer, class Reducer, class Layout, class Budget>
outcome replay(const replay_source& s, const config& c, Scorer scorer, const Budget& budget,
               const std::vector<index_t>& targets) {
  const auto& d = s.dump;
  const index_t n = d.num_tokens();
  const bool oracle = c.mode == "oracle";
  const auto chunks = plan(s, c, *std::min_element(targets.begin(), targets.end()));
  const bool question = by_question(c.scorer);  // score by the pre-pass probes, not the chunk's tail
  if (question && !Scorer::inputs.window_mass)
    throw std::runtime_error("scorer '" + c.scorer + "': only window scorers score by the question");
  const index_t num_probes = d.probes.shape[1];
  kvcap::host::counting_resource mr;
  using compressor = host::compressor<float, Layout, Scorer, Budget, Reducer, structures::mixed>;
  const auto start = std::chrono::steady_clock::now();
  compressor kv({.num_layers = d.layers, .num_kv_heads = d.kv_heads, .num_q_heads = d.q_heads,
                 .head_dim = d.head_dim, .max_chunk = c.chunk,  // the bulk pass fits: it meets an empty cache
                 .max_window = question ? std::max(c.window, num_probes) : c.window},
                {.scorer = scorer, .budget = budget, .structure = d.structure()}, &mr);
  const index_t kvw = d.kv_heads * d.head_dim, qw = d.q_heads * d.head_dim;
  const auto window_of = [&](index_t layer, index_t end) -> kv_tensor<const float> {
    if (!Scorer::inputs.window_mass) return {};
    if (question) return {s.prepass.data() + layer * num_probes * qw, num_probes, d.q_heads, d.head_dim};
    const index_t w = std::min(c.window, end);
    return {s.q[layer].data() + (end - w) * qw, w, d.q_heads, d.head_dim};
  };
  for (const chunk_range r : chunks)
    for (index_t layer = 0; layer < d.layers; ++layer) {
      kv.append(layer, {s.k[layer].data() + r.begin * kvw, r.size(), d.kv_heads, d.head_dim},
                {s.v[layer].data() + r.begin * kvw, r.size(), d.kv_heads, d.head_dim},
                std::span(d.meta).subspan(r.begin, r.size()));
      if (!oracle) kv.compress(layer, window_of(layer, r.end), /*window_is_chunk_tail=*/!question);
    }
  if (oracle)
    for (index_t layer = 0; layer < d.layers; ++layer)
      kv.compress_to(layer, targets[layer], window_of(layer, n), /*window_is_chunk_tail=*/!question);
  outcome o;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  o.peak_bytes = mr.peak_bytes();
  for (index_t layer = 0; layer < d.layers; ++layer) {
    kvcap_tools::accumulate_fidelity(o.f, s.full_k[layer], s.full_v[layer], s.probes[layer], kv.layer(layer),
                                     Reducer::merges, c.top_k);
    for (index_t head = 0; head < d.kv_heads; ++head) {
      std::vector<std::int64_t> kept;
      for (index_t t = 0; t < kv.length(layer, head); ++t) kept.push_back(kv.layer(layer).meta_at(t, head).index);
      o.kept.push_back(std::move(kept));
    }
  }
  return o;
}

/// The config's budget policy, as the compressor's budget (online) or one that holds the
/// whole prompt (oracle), with each layer's target.
template <class Scorer, class Reducer>
outcome dispatch_budget(const replay_source& s, const config& c, Scorer scorer) {
  const index_t n = s.dump.num_tokens();
  const bool oracle = c.mode == "oracle";
  const std::vector<index_t> targets = layer_targets(s, c);
  if (c.budget_policy == "head_adaptive")
    return replay<Scorer, Reducer, layouts::varlen>(
        s, c, scorer, budgets::head_adaptive{.tokens = oracle ? n : c.budget, .min_head_fraction = c.head_floor},
        targets);
  if (c.budget_policy == "pyramid" && !oracle)
    return replay<Scorer, Reducer, layouts::hnd>(
        s, c, scorer, budgets::pyramid_layers{.total_tokens = c.budget * s.dump.layers, .last_to_first = c.pyramid_ratio},
        targets);
  return replay<Scorer, Reducer, layouts::hnd>(s, c, scorer, budgets::fixed_tokens{oracle ? n : c.budget}, targets);
}

template <class Reducer>
outcome dispatch_scorer(const replay_source& s, const config& c) {
  using namespace kvcap::scorers;
  const std::string n = base_scorer(c.scorer);
  if (n == "key_norm") return dispatch_budget<key_norm, Reducer>(s, c, {});
  if (n == "value_norm") return dispatch_budget<value_norm, Reducer>(s, c, {});
  if (n == "recency") return dispatch_budget<recency, Reducer>(s, c, {});
  if (n == "key_diff") return dispatch_budget<key_diff, Reducer>(s, c, {});
  if (n == "temporal") return dispatch_budget<temporal_redundancy, Reducer>(s, c, {.max_lookback = 2});
  if (n == "spatial") return dispatch_budget<spatial_redundancy, Reducer>(s, c, {});
  if (n == "van") return dispatch_budget<pooled_value_norm, Reducer>(s, c, {});
  if (n == "window") return dispatch_budget<observation_window, Reducer>(s, c, {});
  if (n == "key_diff+temporal")
    return dispatch_budget<blend<key_diff, temporal_redundancy>, Reducer>(s, c, {.b = {.max_lookback = 2}});
  if (n == "window+key_diff") return dispatch_budget<blend<observation_window, key_diff>, Reducer>(s, c, {});
  if (n == "window+temporal")
    return dispatch_budget<blend<observation_window, temporal_redundancy>, Reducer>(s, c, {.b = {.max_lookback = 2}});
  throw std::runtime_error("unknown scorer '" + n +
                           "' (expected key_norm, value_norm, recency, key_diff, temporal, spatial, van, window, "
                           "key_diff+temporal, window+key_diff, window+temporal; a window scorer may end in "
                           "@question)");
}

outcome run(const replay_source& s, const config& c) {
  if (c.reducer == "evict") return dispatch_scorer<reducers::evict>(s, c);
  if (c.reducer == "merge") return dispatch_scorer<reducers::merge>(s, c);
  throw std::runtime_error("unknown reducer '" + c.reducer + "' (expected evict or merge)");
}

bool needs_queries(const std::string& scorer) { return scorer.find("window") != std::string::npos; }

}  // namespace

int main(int argc, char** argv) try {
  std::vector<std::string> dumps, budgets_frac = {"0.05", "0.1", "0.25"}, budget_tokens,
                                   chunkings = {"aligned:784"}, scorer_names = {"key_norm", "key_diff", "window"},
                                   modes = {"online", "oracle"}, reducer_names = {"evict"},
                                   budget_policies = {"uniform"};
  std::map<std::string, std::string> labels;
  std::string out_path = "fidelity.csv";
  index_t window = 32, top_k = 32;
  double head_floor = 0.2, pyramid_ratio = 0.5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&] {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--dump") dumps.push_back(value());
    else if (a == "--label") {
      const auto kv = split(value(), '=');
      labels[kv.at(0)] = kv.at(1);
    } else if (a == "--budgets") budgets_frac = split(value());
    else if (a == "--budget-tokens") budget_tokens = split(value()), budgets_frac.clear();
    else if (a == "--chunks") chunkings = split(value());
    else if (a == "--scorers") scorer_names = split(value());
    else if (a == "--modes") modes = split(value());
    else if (a == "--reducers") reducer_names = split(value());
    else if (a == "--budget-policies") budget_policies = split(value());
    else if (a == "--head-floor") head_floor = std::stod(value());
    else if (a == "--pyramid-ratio") pyramid_ratio = std::stod(value());
    else if (a == "--window") window = std::stoll(value());
    else if (a == "--top-k") top_k = std::stoll(value());
    else if (a == "--out") out_path = value();
    else throw std::runtime_error("unknown argument " + a + " (see the comment at the top of fidelity.cpp)");
  }
  if (dumps.empty()) throw std::runtime_error("give at least one --dump DIR");
  std::ofstream out(out_path);
  out << "source,data,tokens,layers,kv_heads,head_dim,scorer,reducer,budget_policy,mode,chunking,chunk,budget_frac,budget,"
         "rel_err,mass_recall,topk_overlap,peak_bytes,seconds,oracle_overlap\n";
  for (const auto& dir : dumps) {
    const replay_source s = load(dir, labels.count(dir) ? labels[dir] : "unlabelled");
    const index_t n = s.dump.num_tokens();
    std::vector<std::pair<double, index_t>> budgets;
    for (const auto& f : budgets_frac)
      budgets.push_back({std::stod(f), std::max<index_t>(static_cast<index_t>(std::stod(f) * n), s.protected_tokens + 16)});
    for (const auto& t : budget_tokens) budgets.push_back({static_cast<double>(std::stoll(t)) / n, std::stoll(t)});
    std::fprintf(stderr, "%s: %lld tokens, %lld layers, %lld protected\n", s.name.c_str(), static_cast<long long>(n),
                 static_cast<long long>(s.dump.layers), static_cast<long long>(s.protected_tokens));
    std::map<std::string, outcome> oracles;
    for (const auto& scorer : scorer_names) {
      if (by_question(scorer) ? !s.dump.has_prepass_probes() : needs_queries(scorer) && !s.dump.has_queries()) {
        std::fprintf(stderr, "  %s: skipped, the dump has no %s\n", scorer.c_str(),
                     by_question(scorer) ? "prepass_probes" : "per-layer queries");
        continue;
      }
      for (const auto& reducer : reducer_names)
        for (const auto& policy : budget_policies)
          for (const auto& mode : modes)
            for (const auto& chunking : chunkings)
              for (const auto& [frac, budget] : budgets) {
                const auto parts = split(chunking, ':');
                config c{scorer, reducer, mode, parts.at(0), std::stoll(parts.at(1)), budget, window, top_k, frac,
                         policy, head_floor, pyramid_ratio};
                if (c.budget >= n) continue;
                const std::vector<index_t> targets = layer_targets(s, c);
                if (const index_t least = *std::min_element(targets.begin(), targets.end()); least < s.protected_tokens) {
                  std::fprintf(stderr, "  %s budget %lld: skipped, a layer's share (%lld) is below the %lld protected tokens\n",
                               policy.c_str(), static_cast<long long>(budget), static_cast<long long>(least),
                               static_cast<long long>(s.protected_tokens));
                  continue;
                }
                // The oracle does not depend on the chunking: one run per (scorer, reducer, policy, budget).
                const auto oracle_of = [&] {
                  const std::string key = scorer + '|' + reducer + '|' + policy + '|' + std::to_string(budget);
                  if (!oracles.count(key)) {
                    config oc = c;
                    oc.mode = "oracle";
                    oracles.emplace(key, run(s, oc));
                  }
                  return oracles.at(key);
                };
                const outcome o = mode == "oracle" ? oracle_of() : run(s, c);
                // Kept-set overlap with the oracle (online rows, when the oracle is in the sweep).
                const bool compare = mode != "oracle" && std::find(modes.begin(), modes.end(), "oracle") != modes.end();
                // Empty in the CSV when there is no oracle to compare with.
                const std::string overlap =
                    mode == "oracle" ? "1" : compare ? std::to_string(kept_overlap(o, oracle_of())) : "";
                out << s.name << ',' << s.data_label << ',' << n << ',' << s.dump.layers << ',' << s.dump.kv_heads << ','
                    << s.dump.head_dim << ',' << scorer << ',' << reducer << ',' << policy << ',' << mode << ','
                    << c.chunking << ',' << c.chunk << ',' << frac << ',' << budget << ',' << o.f.relative_error() << ','
                    << o.f.mass_recall() << ',' << o.f.topk_overlap() << ',' << o.peak_bytes << ',' << o.seconds << ','
                    << overlap << '\n';
                out.flush();
                std::fprintf(stderr, "  %-18s %-5s %-13s %-6s %-8s %4lld budget %6lld: err %.4f recall %.4f top%lld %.3f (%.2fs)\n",
                             scorer.c_str(), reducer.c_str(), policy.c_str(), mode.c_str(), c.chunking.c_str(),
                             static_cast<long long>(c.chunk), static_cast<long long>(budget), o.f.relative_error(),
                             o.f.mass_recall(), static_cast<long long>(top_k), o.f.topk_overlap(), o.seconds);
              }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "fidelity: %s\n", e.what());
  return 2;
}
