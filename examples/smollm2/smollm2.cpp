// smollm2.cpp — a small C++ inference engine for SmolLM2-135M-Instruct (GGUF) with kvcap in
// its attention loop. The reference integration: read engine.hpp's prefill() for the three
// calls kvcap needs, kv_store.hpp for how they are wired.
//
//   smollm2 [demo]        the passkey task on a real document under a KV memory cap: the full
//                         cache cannot hold the prompt, kvcap prefills it at a fixed budget
//   smollm2 generate      greedy answer to --prompt (chat template), full cache or kvcap
//   smollm2 ppl           next-token loss of a continuation after a long compressed prefix:
//                         full cache, then online kvcap and the offline oracle over a grid
//   smollm2 passkey       passkey retrieval in a real-text haystack at several depths, same grid
//   smollm2 speed         prefill tokens/s with and without kvcap, interleaved in one process
//
// ppl and passkey print CSV (one row per run) for tools/smollm2/plot_engine.py.
// Options (defaults in brackets):
//   --gguf PATH               [weights.hpp's search]
//   --budget N | --budgets a,b,...          tokens per layer and kv-head [512]
//   --chunk N  | --chunks a,b,...           prefill chunk [256]
//   --scorer S | --scorers a,b,...          recency key_norm value_norm key_diff window snapkv window+key_diff [key_diff];
//                                           a window scorer + "@question" (passkey, demo) scores every chunk by the
//                                           question's queries from a pre-pass (engine::question_prepass) instead
//                                           of by the chunk's last 32 queries
//   --reducer R | --reducers evict,merge    [evict]
//   --budget-policy P         uniform (every kv-head keeps the budget) or head_adaptive (a layer's heads share
//                             budget x kv_heads by score, per-head lengths) [uniform]
//   --head-floor F            head_adaptive: each head keeps at least F x budget [0.2]
//   --modes full,online,oracle              which runs [all three]
//   --kv-cap-mib X            demo: KV memory cap [64]; demo: haystack --tokens [2048], --scorer [key_diff]
//   --docs a,b,...            documents [Debian's license texts]
//   --prefix N --cont N       ppl: prefix and continuation tokens [3072, 256]
//   --tokens N --depths a,b --trials N   passkey: haystack tokens, needle depths, trials per depth [2048; 0.1,0.3,0.5,0.7,0.9; 2]
//   --prompt TEXT --new N --mode full|online|oracle   generate [full]
//   --reps N                  speed: interleaved repetitions [3]
//   --threads N               Eigen's GEMM threads [all cores]

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine.hpp"
#include "text.hpp"
#include "weights.hpp"

namespace {

using namespace smollm2;

struct args {
  std::string command = "demo";
  std::map<std::string, std::string> options;

  /// `s` read whole by `parse` (std::stoll, std::stod), or an error naming --key and what was expected.
  template <class Parse>
  static auto whole(const std::string& key, const std::string& s, const char* expected, Parse parse) {
    try {
      std::size_t used = 0;
      const auto v = parse(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
    throw std::invalid_argument("--" + key + " " + s + ": expected " + expected);
  }
  std::string get(const std::string& key, const std::string& fallback) const {
    const auto it = options.find(key);
    return it == options.end() ? fallback : it->second;
  }
  long long number(const std::string& key, long long fallback) const {
    return whole(key, get(key, std::to_string(fallback)), "an integer",
                 [](const std::string& s, std::size_t* used) { return std::stoll(s, used); });
  }
  double fraction(const std::string& key, double fallback) const {
    return whole(key, get(key, std::to_string(fallback)), "a number",
                 [](const std::string& s, std::size_t* used) { return std::stod(s, used); });
  }
  std::vector<std::string> list(const std::string& key, const std::string& fallback) const {
    std::vector<std::string> out;
    std::stringstream s(get(key, fallback));
    for (std::string item; std::getline(s, item, ',');)
      if (!item.empty()) out.push_back(item);
    return out;
  }
  std::vector<long long> numbers(const std::string& key, const std::string& fallback) const {
    std::vector<long long> out;
    for (const std::string& s : list(key, fallback)) {
      std::size_t used = 0;
      const long long v = std::stoll(s, &used);
      if (used != s.size() || v <= 0) throw std::invalid_argument("--" + key + " " + s + ": expected positive integers");
      out.push_back(v);
    }
    return out;
  }
};

args parse(int argc, char** argv) {
  args a;
  int i = 1;
  if (i < argc && argv[i][0] != '-') a.command = argv[i++];
  for (; i < argc; ++i) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc)
      throw std::invalid_argument("argument '" + key + "': expected --option value");
    a.options[key.substr(2)] = argv[++i];
  }
  // singular forms are one-element lists
  for (const char* k : {"budget", "chunk", "scorer", "reducer"})
    if (a.options.count(k)) a.options[std::string(k) + "s"] = a.options[k];
  return a;
}

struct loaded_model {
  gguf::file file;
  model net;
  tokenizer tok;
  explicit loaded_model(const std::filesystem::path& p) : file(p), net(file), tok(vocabulary_from_gguf(file)) {}
};

std::string machine() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, name = "unknown CPU";
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      name = line.substr(line.find(':') + 2);
      break;
    }
  return name + ", " + std::to_string(Eigen::nbThreads()) + " threads";
}

std::string fmt_bytes(std::size_t b) {
  char s[64];
  std::snprintf(s, sizeof s, "%.2f MiB", static_cast<double>(b) / (1 << 20));
  return s;
}

/// Greedy answer → the digits it starts with.
std::string leading_digits(const std::string& text) {
  std::string d;
  for (const char c : text) {
    if (c >= '0' && c <= '9') d += c;
    else if (!d.empty() || c != ' ') break;  // past the digits, or text before any
  }
  return d;
}

std::vector<std::int32_t> stop_ids(const tokenizer& tok) {
  std::vector<std::int32_t> s{tok.eos()};
  if (const auto id = tok.token_id("<|im_end|>"); id >= 0) s.push_back(id);
  return s;
}

std::vector<kvcap::token_meta> passkey_meta(const passkey_prompt& p) {
  std::vector<kvcap::token_meta> meta;
  text_meta(0, static_cast<index_t>(p.system_tokens), true, meta);
  text_meta(static_cast<std::int64_t>(p.system_tokens), static_cast<index_t>(p.haystack_tokens), false, meta);
  text_meta(static_cast<std::int64_t>(p.system_tokens + p.haystack_tokens), static_cast<index_t>(p.question_tokens),
            true, meta);
  return meta;
}

/// The question's queries from a pre-pass over the system turn and the question at their
/// final positions, for "@question" scorers; with the time it took.
struct question_window {
  query_windows queries;
  double seconds = 0;
};

question_window passkey_question(engine& e, const passkey_prompt& p, std::span<const kvcap::token_meta> meta) {
  const std::size_t n = p.ids.size(), q = p.question_tokens;
  std::vector<std::int32_t> ids(p.ids.begin(), p.ids.begin() + static_cast<std::ptrdiff_t>(p.system_tokens));
  std::vector<kvcap::token_meta> m(meta.begin(), meta.begin() + static_cast<std::ptrdiff_t>(p.system_tokens));
  ids.insert(ids.end(), p.ids.end() - static_cast<std::ptrdiff_t>(q), p.ids.end());
  m.insert(m.end(), meta.end() - static_cast<std::ptrdiff_t>(q), meta.end());
  if (m.back().index + 1 != static_cast<std::int64_t>(n)) throw std::logic_error("passkey_question: the question is not last");
  const auto t0 = std::chrono::steady_clock::now();
  question_window w{e.question_prepass(ids, m, static_cast<index_t>(q))};
  w.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return w;
}

bool any_by_question(std::span<const std::string> scorers) {
  return std::any_of(scorers.begin(), scorers.end(), [](const std::string& s) { return scores_by_question(s); });
}

// ---------------------------------------------------------------------------------- demo

int demo(const loaded_model& m, const args& a) {
  const config& c = m.net.cfg();
  const store_shape shape = c.kv_shape();
  const index_t chunk = static_cast<index_t>(a.number("chunk", 256));
  const std::size_t cap = static_cast<std::size_t>(a.number("kv-cap-mib", 64)) << 20;
  const auto doc = tokenize_document(m.tok, a.get("doc", default_documents()[0]), 4096);
  const passkey_prompt p = make_passkey_prompt(m.tok, doc, static_cast<std::size_t>(a.number("tokens", 2048)),
                                               0.5, a.get("passkey", "48213"));
  const std::vector<kvcap::token_meta> meta = passkey_meta(p);
  const index_t n = static_cast<index_t>(p.ids.size());
  std::printf("SmolLM2-135M-Instruct (%s): %lld layers, %lld q / %lld kv heads x %lld; %s\n", m.file.path().c_str(),
              (long long)c.layers, (long long)c.q_heads, (long long)c.kv_heads, (long long)c.head_dim, machine().c_str());
  std::printf("prompt: %lld tokens (%zu protected system, %zu haystack from %s with the passkey at 50%%, %zu protected question)\n",
              (long long)n, p.system_tokens, p.haystack_tokens, doc.path.c_str(), p.question_tokens);
  std::printf("KV memory cap: %s; the full cache needs %s for this prompt (%zu B per token)\n\n",
              fmt_bytes(cap).c_str(), fmt_bytes(full_cache::token_bytes(shape) * n).c_str(),
              full_cache::token_bytes(shape));

  // 1. The full cache under the cap: as many tokens as the cap holds.
  const index_t fits = static_cast<index_t>(cap / full_cache::token_bytes(shape));
  engine e(m.net, chunk, n + chunk);
  {
    full_cache capped(shape, fits);
    try {
      e.prefill(p.ids, meta, capped, chunk);
      std::printf("full cache under the cap: prefilled (unexpected: the cap holds the prompt)\n");
    } catch (const std::length_error& err) {
      std::printf("full cache under the cap: FAILS: %s\n", err.what());
    }
  }
  // 2. kvcap under the cap: the largest budget whose fixed footprint fits.
  compression_options o{.scorer = a.get("scorer", "key_diff"), .reducer = a.get("reducer", "evict"), .max_chunk = chunk,
                        .budget_policy = a.get("budget-policy", "uniform"), .head_floor = a.fraction("head-floor", 0.2)};
  question_window question;
  if (scores_by_question(o.scorer)) {
    question = passkey_question(e, p, meta);
    o.question = &question.queries;
  }
  index_t budget = fits;
  for (; budget > 0; budget -= 16) {
    o.budget = budget;
    if (make_store(shape, o)->bytes() <= cap) break;
  }
  o.budget = budget;
  const auto kv = make_store(shape, o);
  prefill_stats ks;
  const auto last = e.prefill(p.ids, meta, *kv, chunk, &ks);
  ks.seconds += question.seconds;  // the pre-pass is part of this prefill
  const std::string answer = m.tok.decode(e.generate(*kv, last, n, 12, stop_ids(m.tok)));
  std::printf("kvcap under the cap (%s, chunk %lld): resident %lld tokens per layer after the prompt\n",
              kv->describe().c_str(), (long long)chunk, (long long)kv->length(0));
  std::printf("  peak KV %zu B measured by kvcap's counting resource, formula %zu B: %s; cap %s\n", kv->bytes(),
              kv->formula_bytes(), kv->bytes() == kv->formula_bytes() ? "equal" : "DIFFERENT", fmt_bytes(cap).c_str());
  std::printf("  prefill %.1f tok/s, %.1f%% of it inside kvcap\n", n / ks.seconds, 100 * ks.kvcap_seconds / ks.seconds);
  std::printf("  answer:%s -> %s\n\n", answer.c_str(), leading_digits(answer) == p.passkey ? "CORRECT" : "wrong");

  // 3. Reference: the full cache without a cap.
  full_cache full(shape, n + 16);
  prefill_stats fs;
  const auto last_full = e.prefill(p.ids, meta, full, chunk, &fs);
  const std::string answer_full = m.tok.decode(e.generate(full, last_full, n, 12, stop_ids(m.tok)));
  std::printf("full cache, no cap: KV %s, prefill %.1f tok/s\n  answer:%s -> %s\n", fmt_bytes(full.bytes()).c_str(),
              n / fs.seconds, answer_full.c_str(), leading_digits(answer_full) == p.passkey ? "CORRECT" : "wrong");
  std::printf("\nKV memory: kvcap %s vs full %s (%.1fx less); passkey %s\n", fmt_bytes(kv->bytes()).c_str(),
              fmt_bytes(full_cache::token_bytes(shape) * n).c_str(),
              static_cast<double>(full_cache::token_bytes(shape) * n) / static_cast<double>(kv->bytes()), p.passkey.c_str());
  return 0;
}

// ------------------------------------------------------------------------------ generate

int generate(const loaded_model& m, const args& a) {
  const store_shape shape = m.net.cfg().kv_shape();
  const std::string prompt = "<|im_start|>user\n" + a.get("prompt", "What is the capital of France?") +
                             "<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<std::int32_t> ids = m.tok.encode(prompt);
  std::vector<kvcap::token_meta> meta;
  text_meta(0, static_cast<index_t>(ids.size()), false, meta);
  const index_t chunk = static_cast<index_t>(a.number("chunk", 256)), n_new = static_cast<index_t>(a.number("new", 64));
  const std::string mode = a.get("mode", "full");
  if (mode != "full" && mode != "online" && mode != "oracle")
    throw std::invalid_argument("--mode " + mode + ": expected full, online or oracle");
  std::unique_ptr<kv_store> store;
  if (mode == "full") store = std::make_unique<full_cache>(shape, static_cast<index_t>(ids.size()) + n_new);
  else store = make_store(shape, {.scorer = a.get("scorer", "key_diff"), .reducer = a.get("reducer", "evict"),
                                  .budget = static_cast<index_t>(a.number("budget", 512)),
                                  .max_chunk = std::max(chunk, n_new),
                                  .budget_policy = a.get("budget-policy", "uniform"),
                                  .head_floor = a.fraction("head-floor", 0.2), .oracle = mode == "oracle",
                                  .prompt_tokens = static_cast<index_t>(ids.size())});
  engine e(m.net, chunk, static_cast<index_t>(ids.size()) + n_new + chunk);
  const auto last = e.prefill(ids, meta, *store, chunk);
  std::printf("%s\n", m.tok.decode(e.generate(*store, last, static_cast<std::int64_t>(ids.size()), n_new, stop_ids(m.tok))).c_str());
  return 0;
}

// ------------------------------------------------------------------------------ the grid

struct grid {
  std::vector<long long> budgets, chunks;
  std::vector<std::string> scorers, reducers, modes;
  std::string budget_policy = "uniform";
  double head_floor = 0.2;
  bool has(const std::string& mode) const { return std::find(modes.begin(), modes.end(), mode) != modes.end(); }
  /// The CSV's head_floor: the fraction a head keeps at least when heads share a budget.
  std::string floor_label() const {
    if (budget_policy == "uniform") return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", head_floor);
    return text;
  }
};

grid read_grid(const args& a) {
  return {a.numbers("budgets", "512"), a.numbers("chunks", "256"), a.list("scorers", "key_diff"),
          a.list("reducers", "evict"), a.list("modes", "full,online,oracle"), a.get("budget-policy", "uniform"),
          a.fraction("head-floor", 0.2)};
}

void csv_header(const char* task_columns, const char* value_columns) {
  std::printf("task,doc,%s,mode,scorer,reducer,budget_policy,head_floor,budget,chunk,prompt_tokens,peak_kv_bytes,formula_kv_bytes,full_kv_bytes,prefill_s,kvcap_s,"
              "metric,%s\n",
              task_columns, value_columns);
  std::fflush(stdout);
}

struct run_row {
  std::string mode, scorer = "-", reducer = "-", budget_policy = "-", head_floor = "-";
  long long budget = 0, chunk = 0;
  std::size_t peak = 0, formula = 0;
  prefill_stats stats{};
};

void print_row(const char* task, const std::string& doc, const std::string& task_values, const run_row& r,
               index_t prompt, std::size_t full_bytes, const char* metric, const std::string& value) {
  std::printf("%s,%s,%s,%s,%s,%s,%s,%s,%lld,%lld,%lld,%zu,%zu,%zu,%.3f,%.3f,%s,%s\n", task,
              std::filesystem::path(doc).filename().c_str(), task_values.c_str(), r.mode.c_str(), r.scorer.c_str(),
              r.reducer.c_str(), r.budget_policy.c_str(), r.head_floor.c_str(), r.budget, r.chunk, (long long)prompt, r.peak, r.formula, full_bytes, r.stats.seconds,
              r.stats.kvcap_seconds, metric, value.c_str());
  std::fflush(stdout);
}

/// Runs every configuration of the grid on one prompt: `evaluate(store, last_hidden)` gives
/// the metric. The full cache runs first; the oracle runs replay its prefill. "@question"
/// scorers score by `question` (its pre-pass time is added to their prefill time).
template <class Evaluate>
void run_grid(const loaded_model& m, const grid& g, std::span<const std::int32_t> ids,
              std::span<const kvcap::token_meta> meta, index_t extra_tokens, const Evaluate& evaluate,
              const std::function<void(const run_row&, const std::string&)>& report,
              const question_window* question = nullptr) {
  const store_shape shape = m.net.cfg().kv_shape();
  const index_t n = static_cast<index_t>(ids.size());
  const long long max_chunk = *std::max_element(g.chunks.begin(), g.chunks.end());
  const index_t window = 32;
  engine e(m.net, static_cast<index_t>(std::max<long long>(max_chunk, extra_tokens)), n + extra_tokens + max_chunk);
  const query_windows* question_queries = question ? &question->queries : nullptr;
  const auto prepass_seconds = [&](const std::string& scorer) {
    return question && scores_by_question(scorer) ? question->seconds : 0.0;
  };

  full_cache full(shape, n + extra_tokens);
  full.record_windows(window);
  run_row fr{.mode = "full", .chunk = max_chunk};
  const auto last_full = e.prefill(ids, meta, full, static_cast<index_t>(max_chunk), &fr.stats);
  fr.peak = fr.formula = full_cache::token_bytes(shape) * static_cast<std::size_t>(n);
  // The oracle replays need the prompt's cache before the evaluation extends it: keep a copy.
  const index_t full_len = full.length(0);

  for (const std::string& scorer : g.scorers)
    for (const std::string& reducer : g.reducers)
      for (const long long budget : g.budgets) {
        if (budget >= n) continue;  // nothing to compress: identical to the full cache (tested)
        if (g.has("online"))
          for (const long long chunk : g.chunks) {
            compression_options o{.scorer = scorer, .reducer = reducer, .budget = static_cast<index_t>(budget),
                                   .max_chunk = static_cast<index_t>(std::max<long long>(chunk, extra_tokens)),
                                   .window = window, .budget_policy = g.budget_policy, .head_floor = g.head_floor,
                                   .question = question_queries};
            const auto store = make_store(shape, o);
            run_row r{.mode = "online", .scorer = scorer, .reducer = reducer, .budget_policy = g.budget_policy,
                      .head_floor = g.floor_label(), .budget = budget, .chunk = chunk};
            const auto last = e.prefill(ids, meta, *store, static_cast<index_t>(chunk), &r.stats);
            r.stats.seconds += prepass_seconds(scorer);
            r.peak = store->bytes();
            r.formula = store->formula_bytes();
            report(r, evaluate(*store, last, e));
          }
        if (g.has("oracle")) {
          compression_options o{.scorer = scorer, .reducer = reducer, .budget = static_cast<index_t>(budget),
                                 .max_chunk = static_cast<index_t>(std::max<long long>(max_chunk, extra_tokens)),
                                 .window = window, .budget_policy = g.budget_policy, .head_floor = g.head_floor,
                                 .oracle = true, .prompt_tokens = full_len, .question = question_queries};
          const auto store = make_store(shape, o);
          run_row r{.mode = "oracle", .scorer = scorer, .reducer = reducer, .budget_policy = g.budget_policy,
                    .head_floor = g.floor_label(), .budget = budget, .chunk = 0};
          const auto t0 = std::chrono::steady_clock::now();
          store->replay(full);
          r.stats.seconds = fr.stats.seconds + prepass_seconds(scorer) +
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          r.stats.kvcap_seconds = store->kvcap_seconds;
          r.peak = store->bytes();
          r.formula = store->formula_bytes();
          report(r, evaluate(*store, last_full, e));
        }
      }
  // Last: evaluating extends the full cache (and overwrites its recorded windows) that the oracle replays.
  if (g.has("full")) report(fr, evaluate(full, last_full, e));
}

int ppl(const loaded_model& m, const args& a) {
  const grid g = read_grid(a);
  const index_t prefix = static_cast<index_t>(a.number("prefix", 3072)), cont = static_cast<index_t>(a.number("cont", 256));
  std::printf("# ppl: %s; prefix %lld tokens, continuation %lld tokens\n", machine().c_str(), (long long)prefix,
              (long long)cont);
  csv_header("cont_tokens", "value");
  for (const std::string& path : a.list("docs", "/usr/share/common-licenses/GPL-3,/usr/share/common-licenses/GFDL-1.3,"
                                                "/usr/share/common-licenses/LGPL-2.1")) {
    const auto doc = tokenize_document(m.tok, path, static_cast<std::size_t>(prefix + cont));
    if (doc.ids.size() < static_cast<std::size_t>(prefix + cont))
      throw std::invalid_argument("--docs " + path + ": " + std::to_string(doc.ids.size()) + " tokens, expected >= " +
                                  std::to_string(prefix + cont));
    const std::span<const std::int32_t> ids(doc.ids.data(), static_cast<std::size_t>(prefix));
    const std::span<const std::int32_t> continuation(doc.ids.data() + prefix, static_cast<std::size_t>(cont));
    std::vector<kvcap::token_meta> meta;
    text_meta(0, prefix, false, meta);
    const std::size_t full_bytes = full_cache::token_bytes(m.net.cfg().kv_shape()) * static_cast<std::size_t>(prefix);
    run_grid(
        m, g, ids, meta, cont,
        [&](kv_store& store, const Eigen::RowVectorXf& last, engine& e) {
          const std::vector<double> nll = e.continuation_nll(store, last, prefix, continuation);
          double sum = 0;
          for (const double x : nll) sum += x;
          char s[32];
          std::snprintf(s, sizeof s, "%.5f", sum / static_cast<double>(nll.size()));
          return std::string(s);
        },
        [&](const run_row& r, const std::string& v) {
          print_row("ppl", path, std::to_string(cont), r, prefix, full_bytes, "nll", v);
        });
  }
  return 0;
}

/// Prefill speed with and without kvcap, interleaved in one process (full, then each scorer,
/// repeated): the ratio of medians is robust to a noisy machine, a single timing is not.
int speed(const loaded_model& m, const args& a) {
  const store_shape shape = m.net.cfg().kv_shape();
  const index_t n = static_cast<index_t>(a.number("tokens", 3072)), chunk = static_cast<index_t>(a.number("chunk", 512));
  const index_t budget = static_cast<index_t>(a.number("budget", 1024));
  const long long reps = a.number("reps", 3);
  const auto doc = tokenize_document(m.tok, a.get("doc", default_documents()[0]), static_cast<std::size_t>(n));
  if (doc.ids.size() < static_cast<std::size_t>(n)) throw std::invalid_argument("--tokens: the document is shorter");
  const std::span<const std::int32_t> ids(doc.ids.data(), static_cast<std::size_t>(n));
  std::vector<kvcap::token_meta> meta;
  text_meta(0, n, false, meta);
  engine e(m.net, chunk, n + chunk);
  const std::vector<std::string> scorers = a.list("scorers", "recency,key_diff,snapkv,window+key_diff");
  std::map<std::string, std::vector<double>> tok_s, share;
  for (long long r = 0; r < reps; ++r) {
    {
      full_cache full(shape, n);
      prefill_stats st;
      e.prefill(ids, meta, full, chunk, &st);
      tok_s["full cache"].push_back(n / st.seconds);
    }
    for (const std::string& sc : scorers) {
      const auto store = make_store(shape, {.scorer = sc, .budget = budget, .max_chunk = chunk});
      prefill_stats st;
      e.prefill(ids, meta, *store, chunk, &st);
      tok_s[sc].push_back(n / st.seconds);
      share[sc].push_back(st.kvcap_seconds / st.seconds);
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("# speed: %s; %lld-token prefill of %s, chunk %lld, budget %lld, median of %lld interleaved runs\n",
              machine().c_str(), (long long)n, std::filesystem::path(doc.path).filename().c_str(), (long long)chunk,
              (long long)budget, reps);
  std::printf("run,prefill_tok_s,vs_full,kvcap_share\n");
  const double full = median(tok_s["full cache"]);
  std::printf("full cache,%.1f,1.000,0.000\n", full);
  for (const std::string& sc : scorers)
    std::printf("kvcap %s,%.1f,%.3f,%.4f\n", sc.c_str(), median(tok_s[sc]), median(tok_s[sc]) / full, median(share[sc]));
  return 0;
}

int passkey(const loaded_model& m, const args& a) {
  const grid g = read_grid(a);
  const std::size_t tokens = static_cast<std::size_t>(a.number("tokens", 2048));
  const long long trials = a.number("trials", 2);
  std::vector<double> depths;
  for (const std::string& d : a.list("depths", "0.1,0.3,0.5,0.7,0.9")) depths.push_back(std::stod(d));
  const std::vector<std::string> docs = a.list("docs", "/usr/share/common-licenses/GPL-3,"
                                                       "/usr/share/common-licenses/GFDL-1.3,"
                                                       "/usr/share/common-licenses/LGPL-2.1");
  std::printf("# passkey: %s; haystack %zu tokens\n", machine().c_str(), tokens);
  csv_header("depth,trial,passkey", "value,answer");
  std::mt19937 rng(2026);
  for (long long trial = 0; trial < trials; ++trial)
    for (const double depth : depths) {
      const std::string& path = docs[static_cast<std::size_t>(trial) % docs.size()];
      const auto doc = tokenize_document(m.tok, path, tokens + 64);
      const std::string key = std::to_string(10000 + rng() % 90000);
      const passkey_prompt p = make_passkey_prompt(m.tok, doc, tokens, depth, key);
      const std::vector<kvcap::token_meta> meta = passkey_meta(p);
      const index_t n = static_cast<index_t>(p.ids.size());
      const std::size_t full_bytes = full_cache::token_bytes(m.net.cfg().kv_shape()) * static_cast<std::size_t>(n);
      char values[64];
      std::snprintf(values, sizeof values, "%.2f,%lld,%s", depth, trial, key.c_str());
      std::optional<question_window> question;
      if (any_by_question(g.scorers)) {
        engine prepass(m.net, static_cast<index_t>(p.system_tokens + p.question_tokens), n);
        question = passkey_question(prepass, p, meta);
      }
      run_grid(
          m, g, p.ids, meta, 16,
          [&](kv_store& store, const Eigen::RowVectorXf& last, engine& e) {
            std::string answer = m.tok.decode(e.generate(store, last, n, 10, stop_ids(m.tok)));
            const bool correct = leading_digits(answer) == key;
            for (char& ch : answer)  // one CSV field
              if (ch == '"' || ch == '\n' || ch == '\r') ch = ' ';
            return std::string(correct ? "1" : "0") + ",\"" + answer + "\"";
          },
          [&](const run_row& r, const std::string& v) { print_row("passkey", path, values, r, n, full_bytes, "correct", v); },
          question ? &*question : nullptr);
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const args a = parse(argc, argv);
  if (a.options.count("threads")) Eigen::setNbThreads(static_cast<int>(a.number("threads", 0)));
  std::filesystem::path path;
  if (a.options.count("gguf")) path = a.get("gguf", "");
  else if (const auto found = find_weights()) path = *found;
  else {
    std::fprintf(stderr, "SmolLM2 weights not found: run scripts/fetch_smollm2.sh (or pass --gguf PATH)\n");
    return 2;
  }
  const loaded_model m(path);
  if (a.command == "demo") return demo(m, a);
  if (a.command == "generate") return generate(m, a);
  if (a.command == "ppl") return ppl(m, a);
  if (a.command == "passkey") return passkey(m, a);
  if (a.command == "speed") return speed(m, a);
  std::fprintf(stderr, "unknown command '%s': expected demo, generate, ppl, passkey or speed\n", a.command.c_str());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "smollm2: %s\n", e.what());
  return 1;
}
