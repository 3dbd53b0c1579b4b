// model.hpp — SmolLM2 (a Llama decoder) in float32 with Eigen: weights dequantised from the
// GGUF at load, and a forward pass over one chunk of tokens whose K/V go to a kv_store.
//
//   x = embed[tokens]
//   per layer:  h = RMSNorm(x)·g_attn;  q, k, v = h·Wq, h·Wk, h·Wv;  RoPE(q, k) at each
//               token's logical position;  store.append(k, v);  a = attention over the
//               store;  store.end_of_chunk (kvcap compresses here);  x += a·Wo
//               h = RMSNorm(x)·g_ffn;   x += (SiLU(h·Wgate) ⊙ h·Wup)·Wdown
//   out = RMSNorm(x)·g_out;  logits = out·Eᵀ (tied embeddings unless output.weight exists)
//
// RoPE rotates ADJACENT channel pairs (2i, 2i+1): llama.cpp's converter permutes the rows
// of attn_q / attn_k so that ggml's "normal" RoPE reproduces HF's rotate-half on the
// original weights (every q·k is unchanged). θ_i = base^(−2i/d), base from the GGUF.
//
// Positions are the tokens' logical indices (token_meta::index): a token keeps the phase it
// was rotated with when computed, whatever kvcap evicts later, and the next token continues
// from the logical position, not from the number of resident slots.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf.hpp"
#include "kv_store.hpp"

namespace smollm2 {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct config {
  index_t layers = 0, hidden = 0, q_heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  double rope_base = 10000.0;
  float rms_eps = 1e-5f;
  index_t context = 0;  ///< the model's trained context length

  static config from(const gguf::file& f) {
    if (const std::string arch = f.string("general.architecture"); arch != "llama")
      throw std::runtime_error("gguf " + f.path() + ": general.architecture is '" + arch + "', expected 'llama'");
    config c;
    c.layers = static_cast<index_t>(f.integer("llama.block_count"));
    c.hidden = static_cast<index_t>(f.integer("llama.embedding_length"));
    c.q_heads = static_cast<index_t>(f.integer("llama.attention.head_count"));
    c.kv_heads = static_cast<index_t>(f.integer("llama.attention.head_count_kv"));
    c.head_dim = c.hidden / c.q_heads;
    c.ffn = static_cast<index_t>(f.integer("llama.feed_forward_length"));
    c.vocab = static_cast<index_t>(f.tensor("token_embd.weight").dims.at(1));
    c.rope_base = f.has("llama.rope.freq_base") ? f.real("llama.rope.freq_base") : 10000.0;
    c.rms_eps = static_cast<float>(f.real("llama.attention.layer_norm_rms_epsilon"));
    c.context = static_cast<index_t>(f.integer("llama.context_length"));
    if (c.hidden % c.q_heads != 0 || c.q_heads % c.kv_heads != 0 || c.head_dim % 2 != 0)
      throw std::runtime_error("gguf " + f.path() + ": unsupported head shape");
    return c;
  }
  store_shape kv_shape() const { return {layers, kv_heads, q_heads, head_dim}; }
};

/// One chunk's activations, sized once for the largest chunk (no allocation per chunk).
struct forward_scratch {
  row_matrix x, h, qkv, attn, gate_up;
  std::vector<float> q, k, v;  // (T, heads, dim) after RoPE
  std::vector<std::int64_t> pos;
  std::vector<float> cos, sin;  // (T, head_dim / 2): the chunk's rotary phases, shared by all layers
  attention_scratch attention;

  forward_scratch(const config& c, index_t max_tokens, index_t max_keys)
      : x(max_tokens, c.hidden), h(max_tokens, c.hidden),
        qkv(max_tokens, (c.q_heads + 2 * c.kv_heads) * c.head_dim), attn(max_tokens, c.q_heads * c.head_dim),
        gate_up(max_tokens, 2 * c.ffn), q(static_cast<std::size_t>(max_tokens * c.q_heads * c.head_dim)),
        k(static_cast<std::size_t>(max_tokens * c.kv_heads * c.head_dim)), v(k.size()),
        pos(static_cast<std::size_t>(max_tokens)), cos(static_cast<std::size_t>(max_tokens * c.head_dim / 2)),
        sin(cos.size()), attention(max_tokens, max_keys) {}
};

class model {
 public:
  explicit model(const gguf::file& f) : config_(config::from(f)) {
    const config& c = config_;
    const auto load = [&](const std::string& name, index_t rows, index_t cols) {
      const std::int64_t dims[] = {cols, rows};  // ggml ne: the fastest dim (input) first
      const std::vector<float> w = f.dequantize(name, dims);
      return row_matrix(Eigen::Map<const row_matrix>(w.data(), rows, cols));
    };
    const auto load_vector = [&](const std::string& name, index_t n) {
      const std::int64_t dims[] = {n};
      const std::vector<float> w = f.dequantize(name, dims);
      return Eigen::RowVectorXf(Eigen::Map<const Eigen::RowVectorXf>(w.data(), n));
    };
    embed_ = load("token_embd.weight", c.vocab, c.hidden);
    if (f.has_tensor("output.weight")) output_ = load("output.weight", c.vocab, c.hidden);
    out_norm_ = load_vector("output_norm.weight", c.hidden);
    const index_t qd = c.q_heads * c.head_dim, kd = c.kv_heads * c.head_dim;
    for (index_t l = 0; l < c.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      layer w;
      w.attn_norm = load_vector(p + "attn_norm.weight", c.hidden);
      w.wqkv.resize(qd + 2 * kd, c.hidden);  // one GEMM for q, k and v
      w.wqkv << load(p + "attn_q.weight", qd, c.hidden), load(p + "attn_k.weight", kd, c.hidden),
          load(p + "attn_v.weight", kd, c.hidden);
      w.wo = load(p + "attn_output.weight", c.hidden, qd);
      w.ffn_norm = load_vector(p + "ffn_norm.weight", c.hidden);
      w.wgate_up.resize(2 * c.ffn, c.hidden);
      w.wgate_up << load(p + "ffn_gate.weight", c.ffn, c.hidden), load(p + "ffn_up.weight", c.ffn, c.hidden);
      w.wdown = load(p + "ffn_down.weight", c.hidden, c.ffn);
      layers_.push_back(std::move(w));
    }
    // θ_i = base^(−2i/d) and the angles in double, rounded to float once (as the reference does).
    const index_t half = c.head_dim / 2;
    inv_freq_.resize(static_cast<std::size_t>(half));
    for (index_t i = 0; i < half; ++i)
      inv_freq_[i] = std::pow(c.rope_base, -static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
  }

  const config& cfg() const { return config_; }
  const row_matrix& output_weights() const { return output_.size() ? output_ : embed_; }

  /// Runs `tokens` (with their metadata: logical index = position, protection) through the
  /// model over `store`, which receives their K/V. Returns the final-normed hidden states
  /// (T, hidden), a view into `scratch` valid until the next call.
  auto forward(std::span<const std::int32_t> tokens, std::span<const kvcap::token_meta> meta, kv_store& store,
               forward_scratch& s) const {
    const config& c = config_;
    const index_t T = static_cast<index_t>(tokens.size());
    if (T > s.x.rows()) throw std::invalid_argument("forward: chunk of " + std::to_string(T) +
                                                    " tokens exceeds the scratch's " + std::to_string(s.x.rows()));
    auto x = s.x.topRows(T);
    for (index_t t = 0; t < T; ++t) {
      if (tokens[t] < 0 || tokens[t] >= c.vocab)
        throw std::invalid_argument("forward: token id " + std::to_string(tokens[t]) + " outside [0, " +
                                    std::to_string(c.vocab) + ")");
      x.row(t) = embed_.row(tokens[t]);
      s.pos[t] = meta[t].index;
      for (index_t i = 0; i < c.head_dim / 2; ++i) {  // angles in double, rounded once (as the reference)
        const double angle = static_cast<double>(s.pos[t]) * inv_freq_[i];
        s.cos[t * c.head_dim / 2 + i] = static_cast<float>(std::cos(angle));
        s.sin[t * c.head_dim / 2 + i] = static_cast<float>(std::sin(angle));
      }
    }
    const index_t qd = c.q_heads * c.head_dim, kd = c.kv_heads * c.head_dim;
    auto h = s.h.topRows(T);
    auto qkv = s.qkv.topRows(T);
    auto attn = s.attn.topRows(T);
    auto gate_up = s.gate_up.topRows(T);
    for (index_t l = 0; l < c.layers; ++l) {
      const layer& w = layers_[l];
      rms_norm(x, w.attn_norm, h);
      qkv.noalias() = h * w.wqkv.transpose();
      for (index_t t = 0; t < T; ++t) {
        const float* cs = &s.cos[t * c.head_dim / 2];
        const float* sn = &s.sin[t * c.head_dim / 2];
        rope(&qkv(t, 0), c.q_heads, cs, sn, &s.q[t * qd]);
        rope(&qkv(t, qd), c.kv_heads, cs, sn, &s.k[t * kd]);
        std::copy_n(&qkv(t, qd + kd), kd, &s.v[t * kd]);
      }
      const kvcap::kv_tensor<const float> k{s.k.data(), T, c.kv_heads, c.head_dim};
      const kvcap::kv_tensor<const float> v{s.v.data(), T, c.kv_heads, c.head_dim};
      store.append(l, k, v, meta);
      store.attend(l, s.q.data(), T, s.pos.data(), s.attention, attn.data());
      store.end_of_chunk(l, {s.q.data(), T, c.q_heads, c.head_dim});
      x.noalias() += attn * w.wo.transpose();

      rms_norm(x, w.ffn_norm, h);
      gate_up.noalias() = h * w.wgate_up.transpose();
      auto gate = gate_up.leftCols(c.ffn).array();
      gate = gate / (1.0f + (-gate).exp()) * gate_up.rightCols(c.ffn).array();  // SiLU(gate) ⊙ up
      x.noalias() += gate_up.leftCols(c.ffn) * w.wdown.transpose();
    }
    rms_norm(x, out_norm_, h);
    return h;
  }

  /// Logits (vocab) of one final hidden state.
  Eigen::RowVectorXf logits(const Eigen::Ref<const Eigen::RowVectorXf>& hidden) const {
    return hidden * output_weights().transpose();
  }

 private:
  struct layer {
    Eigen::RowVectorXf attn_norm, ffn_norm;
    row_matrix wqkv, wo, wgate_up, wdown;  // (out, in), as stored
  };

  template <class In, class Out>
  void rms_norm(const In& x, const Eigen::RowVectorXf& gain, Out& out) const {
    for (index_t t = 0; t < x.rows(); ++t) {
      const float ms = x.row(t).squaredNorm() / static_cast<float>(x.cols());
      out.row(t) = x.row(t) * (1.0f / std::sqrt(ms + config_.rms_eps));
      out.row(t).array() *= gain.array();
    }
  }

  /// Adjacent-pair rotation of `heads` vectors of head_dim by the phases cs / sn (head_dim / 2).
  void rope(const float* in, index_t heads, const float* cs, const float* sn, float* out) const {
    const index_t d = config_.head_dim;
    for (index_t hd = 0; hd < heads; ++hd)
      for (index_t i = 0; i < d / 2; ++i) {
        const float a = in[hd * d + 2 * i], b = in[hd * d + 2 * i + 1];
        out[hd * d + 2 * i] = a * cs[i] - b * sn[i];
        out[hd * d + 2 * i + 1] = a * sn[i] + b * cs[i];
      }
  }

  config config_;
  row_matrix embed_, output_;
  Eigen::RowVectorXf out_norm_;
  std::vector<layer> layers_;
  std::vector<double> inv_freq_;
};

}  // namespace smollm2
