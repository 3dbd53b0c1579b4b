#pragma once
// tools/fidelity/kv_dump.hpp — K/V dumped from a real model, described by a manifest.
//
// A dump is a directory with `manifest.txt` and .npy arrays. The manifest is one
// "key values..." per line (# starts a comment):
//
//   kvcap-dump 1                      format version (first line)
//   layers 4                          layers, kv-heads, query heads, head dim
//   kv_heads 2
//   q_heads 4
//   head_dim 64
//   segment text 8 protected          the prompt, in order: text N [protected],
//   segment video 10 20 27            video FRAMES ROWS COLS, image ROWS COLS
//   segment text 12 protected
//   k 0 layer0_k.npy                  per layer: keys and values, shape (tokens, kv_heads,
//   v 0 layer0_v.npy                  head_dim), float32 or float16, RoPE already applied
//   q 0 layer0_q.npy                  optional, per layer: queries (tokens, q_heads, head_dim),
//                                     for query-aware scorers (observation windows)
//   probes probes.npy                 optional: probe queries (layers, probes, q_heads, head_dim)
//   prepass_probes prepass.npy        optional: the probe tokens' queries from a pre-pass over
//                                     the protected prefix and the probe tokens alone, at their
//                                     final positions (what an engine can know before the
//                                     prefill); the shape of probes
//   positions positions.npy           optional: (tokens, 3) int M-RoPE positions (t, h, w)
//                                     overriding the Qwen2-VL rule of structures::mixed
//
// read_kv_dump checks every shape against the manifest and names what disagrees.

#include <kvcap/policies.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.hpp"

namespace kvcap_tools {

struct kv_dump {
  kvcap::index_t layers = 0, kv_heads = 0, q_heads = 0, head_dim = 0;
  std::vector<kvcap::structures::segment> segments;
  std::vector<npy_array> k, v;  ///< (layer) of (tokens, kv_heads, head_dim)
  std::vector<npy_array> q;     ///< (layer) of (tokens, q_heads, head_dim); empty if absent
  npy_array probes;             ///< (layers, probes, q_heads, head_dim); empty if absent
  npy_array prepass_probes;     ///< probes' shape: the probes' queries from a pre-pass; empty if absent
  std::vector<kvcap::token_meta> meta;  ///< (tokens)

  kvcap::structures::mixed structure() const { return {segments}; }
  kvcap::index_t num_tokens() const { return structure().num_tokens(); }
  bool has_probes() const { return !probes.shape.empty(); }
  bool has_prepass_probes() const { return !prepass_probes.shape.empty(); }
  bool has_queries() const { return !q.empty(); }
};

inline kv_dump read_kv_dump(const std::filesystem::path& dir) {
  const auto manifest_path = dir / "manifest.txt";
  std::ifstream in(manifest_path);
  if (!in) throw std::runtime_error("kv dump: cannot open " + manifest_path.string());
  const auto fail = [&](const std::string& what) {
    throw std::runtime_error("kv dump " + manifest_path.string() + ": " + what);
  };
  kv_dump d;
  std::vector<std::string> k_files, v_files, q_files;
  std::string probes_file, prepass_file, positions_file, line;
  bool versioned = false;
  while (std::getline(in, line)) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string key;
    if (!(ls >> key)) continue;
    if (key == "kvcap-dump") {
      int version = 0;
      ls >> version;
      if (version != 1) fail("unsupported version (expected 1)");
      versioned = true;
    } else if (key == "layers") ls >> d.layers;
    else if (key == "kv_heads") ls >> d.kv_heads;
    else if (key == "q_heads") ls >> d.q_heads;
    else if (key == "head_dim") ls >> d.head_dim;
    else if (key == "segment") {
      std::string kind, flag;
      kvcap::index_t a = 0, b = 0, c = 0;
      ls >> kind;
      if (kind == "text") {
        ls >> a >> flag;
        d.segments.push_back(kvcap::structures::segment::text(a, flag == "protected"));
      } else if (kind == "image") {
        ls >> a >> b;
        d.segments.push_back(kvcap::structures::segment::image(a, b));
      } else if (kind == "video") {
        ls >> a >> b >> c;
        d.segments.push_back(kvcap::structures::segment::video(a, b, c));
      } else fail("segment kind '" + kind + "' (expected text, image or video)");
    } else if (key == "k" || key == "v" || key == "q") {
      std::size_t layer = 0;
      std::string file;
      ls >> layer >> file;
      auto& files = key == "k" ? k_files : key == "v" ? v_files : q_files;
      if (files.size() <= layer) files.resize(layer + 1);
      files[layer] = file;
    } else if (key == "probes") ls >> probes_file;
    else if (key == "prepass_probes") ls >> prepass_file;
    else if (key == "positions") ls >> positions_file;
    else fail("unknown key '" + key + "'");
  }
  if (!versioned) fail("first line must be 'kvcap-dump 1'");
  if (d.layers <= 0 || d.kv_heads <= 0 || d.q_heads <= 0 || d.head_dim <= 0)
    fail("layers, kv_heads, q_heads and head_dim must all be given and positive");
  if (d.segments.empty()) fail("no segment lines");
  const kvcap::index_t tokens = d.num_tokens();
  for (kvcap::index_t layer = 0; layer < d.layers; ++layer) {
    for (auto* files : {&k_files, &v_files}) {
      const char* name = files == &k_files ? "k" : "v";
      if (static_cast<kvcap::index_t>(files->size()) <= layer || (*files)[layer].empty())
        fail(std::string("missing '") + name + " " + std::to_string(layer) + " FILE'");
      npy_array a = read_npy((dir / (*files)[layer]).string());
      if (a.shape != std::vector<std::int64_t>{tokens, d.kv_heads, d.head_dim})
        fail((*files)[layer] + ": shape must be (tokens=" + std::to_string(tokens) + ", kv_heads, head_dim)");
      (files == &k_files ? d.k : d.v).push_back(std::move(a));
    }
  }
  if (!q_files.empty()) {
    for (kvcap::index_t layer = 0; layer < d.layers; ++layer) {
      if (static_cast<kvcap::index_t>(q_files.size()) <= layer || q_files[layer].empty())
        fail("missing 'q " + std::to_string(layer) + " FILE' (queries are given for some layers only)");
      npy_array a = read_npy((dir / q_files[layer]).string());
      if (a.shape != std::vector<std::int64_t>{tokens, d.q_heads, d.head_dim})
        fail(q_files[layer] + ": shape must be (tokens=" + std::to_string(tokens) + ", q_heads, head_dim)");
      d.q.push_back(std::move(a));
    }
  }
  if (!probes_file.empty()) {
    d.probes = read_npy((dir / probes_file).string());
    if (d.probes.shape.size() != 4 || d.probes.shape[0] != d.layers || d.probes.shape[2] != d.q_heads ||
        d.probes.shape[3] != d.head_dim)
      fail(probes_file + ": shape must be (layers, probes, q_heads, head_dim)");
  }
  if (!prepass_file.empty()) {
    if (probes_file.empty()) fail("prepass_probes without probes");
    d.prepass_probes = read_npy((dir / prepass_file).string());
    if (d.prepass_probes.shape != d.probes.shape) fail(prepass_file + ": shape must be the shape of " + probes_file);
  }
  const auto structure = d.structure();
  for (kvcap::index_t t = 0; t < tokens; ++t) d.meta.push_back(structure.meta(t));
  if (!positions_file.empty()) {
    const npy_array p = read_npy((dir / positions_file).string());
    if (p.shape != std::vector<std::int64_t>{tokens, 3}) fail(positions_file + ": shape must be (tokens, 3)");
    for (kvcap::index_t t = 0; t < tokens; ++t)
      d.meta[t].position = {static_cast<std::int32_t>(p.at(3 * t)), static_cast<std::int32_t>(p.at(3 * t + 1)),
                            static_cast<std::int32_t>(p.at(3 * t + 2))};
  }
  return d;
}

}  // namespace kvcap_tools
