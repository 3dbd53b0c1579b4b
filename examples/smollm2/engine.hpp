// engine.hpp — the loop DESIGN.md describes, around model.hpp: chunked prefill over a
// kv_store (every layer: append → attend → compress), then greedy decoding or scoring of a
// continuation, continuing from the prompt's LOGICAL position.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "model.hpp"

namespace smollm2 {

/// token_meta for text tokens [first, first + n): logical index = position, optionally protected.
inline void text_meta(std::int64_t first, index_t n, bool is_protected, std::vector<kvcap::token_meta>& out) {
  for (index_t i = 0; i < n; ++i) {
    kvcap::token_meta m;
    m.index = first + i;
    m.position = {static_cast<std::int32_t>(first + i), static_cast<std::int32_t>(first + i),
                  static_cast<std::int32_t>(first + i)};
    m.is_protected = is_protected;
    out.push_back(m);
  }
}

struct prefill_stats {
  index_t tokens = 0;
  double seconds = 0;        ///< wall time of the whole prefill
  double kvcap_seconds = 0;  ///< of which inside kvcap (append + compress)
};

class engine {
 public:
  /// Scratch for chunks of up to `max_chunk` tokens over up to `max_keys` resident keys.
  engine(const model& m, index_t max_chunk, index_t max_keys)
      : model_(m), max_chunk_(max_chunk), scratch_(m.cfg(), max_chunk, max_keys) {}

  const model& net() const { return model_; }

  /// Prefills `tokens` (metadata per token) in chunks of `chunk` tokens. `on_chunk(first,
  /// hidden)` sees each chunk's final hidden states (e.g. to compute logits); the last
  /// token's hidden state is returned, for decoding to start from.
  Eigen::RowVectorXf prefill(std::span<const std::int32_t> tokens, std::span<const kvcap::token_meta> meta,
                             kv_store& store, index_t chunk, prefill_stats* stats = nullptr,
                             const std::function<void(index_t, const row_matrix&)>& on_chunk = {}) {
    if (chunk <= 0 || chunk > max_chunk_)
      throw std::invalid_argument("prefill: chunk " + std::to_string(chunk) + ", expected 1.." +
                                  std::to_string(max_chunk_));
    if (tokens.size() != meta.size() || tokens.empty())
      throw std::invalid_argument("prefill: " + std::to_string(tokens.size()) + " tokens with " +
                                  std::to_string(meta.size()) + " metadata records (expected equal, > 0)");
    const double kvcap_before = store.kvcap_seconds;
    const auto t0 = std::chrono::steady_clock::now();
    Eigen::RowVectorXf last;
    const index_t n = static_cast<index_t>(tokens.size());
    for (index_t first = 0; first < n; first += chunk) {
      const index_t len = std::min(chunk, n - first);
      const auto hidden = model_.forward(tokens.subspan(first, len), meta.subspan(first, len), store, scratch_);
      if (on_chunk) {
        block_ = hidden;
        on_chunk(first, block_);
      }
      last = hidden.row(len - 1);
    }
    store.end_of_prefill();
    if (stats) {
      stats->tokens = n;
      stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      stats->kvcap_seconds = store.kvcap_seconds - kvcap_before;
    }
    return last;
  }

  /// The question's queries per layer, before the prompt is prefilled (what "@question"
  /// window scorers score every chunk by, compression_options::question). Runs `tokens` —
  /// the protected system turn, then the question, each with its token_meta, so the question
  /// sits at its final positions — in one chunk over a scratch full cache, and keeps the last
  /// `question_tokens` queries of every layer. An engine knows the question and the prompt's
  /// length before the prefill; this costs a forward pass over these few tokens, whose cache
  /// is then dropped. The queries differ from the ones the question will have after the whole
  /// prompt, which also attend to the document; they are what can be known up front.
  query_windows question_prepass(std::span<const std::int32_t> tokens, std::span<const kvcap::token_meta> meta,
                                 index_t question_tokens) {
    const index_t n = static_cast<index_t>(tokens.size());
    if (n > max_chunk_ || tokens.size() != meta.size())
      throw std::invalid_argument("question_prepass: " + std::to_string(n) + " tokens with " +
                                  std::to_string(meta.size()) + " metadata records (expected equal, <= max_chunk " +
                                  std::to_string(max_chunk_) + ")");
    if (question_tokens <= 0 || question_tokens > n)
      throw std::invalid_argument("question_prepass: question_tokens " + std::to_string(question_tokens) +
                                  ", expected 1.." + std::to_string(n));
    full_cache scratch_cache(model_.cfg().kv_shape(), n);
    scratch_cache.record_windows(question_tokens);
    model_.forward(tokens, meta, scratch_cache, scratch_);
    return scratch_cache.windows();
  }

  /// Greedy decoding of up to `n` tokens after a prefill whose last hidden state is `last`
  /// and whose next logical position is `next_index`. Stops at any of `stop`.
  std::vector<std::int32_t> generate(kv_store& store, Eigen::RowVectorXf last, std::int64_t next_index, index_t n,
                                     std::span<const std::int32_t> stop = {}) {
    std::vector<std::int32_t> out;
    std::vector<kvcap::token_meta> meta;
    for (index_t i = 0; i < n; ++i) {
      Eigen::Index best;
      model_.logits(last).maxCoeff(&best);
      const auto id = static_cast<std::int32_t>(best);
      if (std::find(stop.begin(), stop.end(), id) != stop.end()) break;
      out.push_back(id);
      meta.clear();
      text_meta(next_index++, 1, false, meta);
      last = model_.forward(std::span(&out.back(), 1), meta, store, scratch_).row(0);
    }
    return out;
  }

  /// Next-token negative log-likelihoods of `continuation` after a prefill (last hidden
  /// `last`, next position `next_index`): element i is −log p(continuation[i] | everything
  /// before). The continuation runs as one chunk over the (compressed) prefix.
  std::vector<double> continuation_nll(kv_store& store, const Eigen::RowVectorXf& last, std::int64_t next_index,
                                       std::span<const std::int32_t> continuation) {
    std::vector<kvcap::token_meta> meta;
    text_meta(next_index, static_cast<index_t>(continuation.size()), false, meta);
    std::vector<double> nll;
    nll.push_back(token_nll(last, continuation[0]));
    const index_t n = static_cast<index_t>(continuation.size()) - 1;  // the last token predicts nothing scored
    if (n > 0) {
      const auto hidden = model_.forward(continuation.first(n), std::span(meta).first(n), store, scratch_);
      for (index_t i = 0; i < n; ++i) nll.push_back(token_nll(hidden.row(i), continuation[i + 1]));
    }
    return nll;
  }

  double token_nll(const Eigen::Ref<const Eigen::RowVectorXf>& hidden, std::int32_t target) const {
    const Eigen::RowVectorXf logits = model_.logits(hidden);
    const float top = logits.maxCoeff();
    const double lse = top + std::log((logits.array() - top).exp().cast<double>().sum());
    return lse - logits[target];
  }

 private:
  const model& model_;
  index_t max_chunk_;
  forward_scratch scratch_;
  row_matrix block_;
};

}  // namespace smollm2
