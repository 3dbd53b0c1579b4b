// The GGUF reader on small files written here byte by byte: metadata of every kind,
// tensors of every supported type dequantised to hand-computed values, and clear errors on
// malformed files. (The real checkpoint is covered by test_engine: its logits match an
// independent reference only if every tensor was read right.)
#include <doctest/doctest.h>

#include <smollm2/gguf.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using smollm2::gguf::tensor_type;

/// Builds a GGUF v3 file in memory.
struct writer {
  std::vector<std::uint8_t> header, data;
  std::uint64_t n_kv = 0, n_tensors = 0;
  std::vector<std::uint8_t> kv, infos;

  template <class U>
  static void put(std::vector<std::uint8_t>& out, U v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(U));
  }
  static void put_string(std::vector<std::uint8_t>& out, const std::string& s) {
    put<std::uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  template <class U>
  void scalar(const std::string& key, std::uint32_t type, U v) {
    put_string(kv, key);
    put<std::uint32_t>(kv, type);
    put<U>(kv, v);
    ++n_kv;
  }
  void string(const std::string& key, const std::string& v) {
    put_string(kv, key);
    put<std::uint32_t>(kv, 8);
    put_string(kv, v);
    ++n_kv;
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    put_string(kv, key);
    put<std::uint32_t>(kv, 9);
    put<std::uint32_t>(kv, 8);
    put<std::uint64_t>(kv, v.size());
    for (const auto& s : v) put_string(kv, s);
    ++n_kv;
  }
  void int32s(const std::string& key, const std::vector<std::int32_t>& v) {
    put_string(kv, key);
    put<std::uint32_t>(kv, 9);
    put<std::uint32_t>(kv, 5);
    put<std::uint64_t>(kv, v.size());
    for (const auto x : v) put<std::int32_t>(kv, x);
    ++n_kv;
  }
  void tensor(const std::string& name, std::vector<std::uint64_t> dims, tensor_type type,
              const std::vector<std::uint8_t>& bytes) {
    while (data.size() % 32) data.push_back(0);
    put_string(infos, name);
    put<std::uint32_t>(infos, static_cast<std::uint32_t>(dims.size()));
    for (const auto d : dims) put<std::uint64_t>(infos, d);
    put<std::uint32_t>(infos, static_cast<std::uint32_t>(type));
    put<std::uint64_t>(infos, data.size());
    data.insert(data.end(), bytes.begin(), bytes.end());
    ++n_tensors;
  }
  std::vector<std::uint8_t> bytes() const {
    std::vector<std::uint8_t> out;
    put<std::uint32_t>(out, 0x46554747u);  // "GGUF"
    put<std::uint32_t>(out, 3);
    put<std::uint64_t>(out, n_tensors);
    put<std::uint64_t>(out, n_kv);
    out.insert(out.end(), kv.begin(), kv.end());
    out.insert(out.end(), infos.begin(), infos.end());
    while (out.size() % 32) out.push_back(0);
    out.insert(out.end(), data.begin(), data.end());
    return out;
  }
};

std::filesystem::path write_file(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  const auto path = std::filesystem::temp_directory_path() / ("kvcap_test_" + name + ".gguf");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
  return path;
}

void put_half(std::vector<std::uint8_t>& out, std::uint16_t h) { writer::put<std::uint16_t>(out, h); }

/// A file with one tensor of each supported type and metadata of each kind.
writer sample() {
  writer w;
  w.string("general.architecture", "llama");
  w.scalar<std::uint32_t>("llama.block_count", 4, 30);
  w.scalar<float>("llama.rope.freq_base", 6, 100000.0f);
  w.scalar<std::uint8_t>("tokenizer.ggml.add_bos_token", 7, 0);
  w.scalar<std::int32_t>("some.negative", 5, -3);
  w.strings("tokenizer.ggml.tokens", {"a", "b", "<|im_end|>"});
  w.int32s("tokenizer.ggml.token_type", {1, 1, 3});

  std::vector<std::uint8_t> f32;
  for (const float x : {1.5f, -2.0f, 0.25f, 8.0f}) writer::put<float>(f32, x);
  w.tensor("f32", {2, 2}, tensor_type::f32, f32);

  std::vector<std::uint8_t> f16;  // 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal)
  for (const std::uint16_t h : {0x3c00, 0xc000, 0x7bff, 0x0001}) put_half(f16, h);
  w.tensor("f16", {4}, tensor_type::f16, f16);

  std::vector<std::uint8_t> bf16;  // 1.0, -3.0
  for (const std::uint16_t h : {0x3f80, 0xc040}) put_half(bf16, h);
  w.tensor("bf16", {2}, tensor_type::bf16, bf16);

  std::vector<std::uint8_t> q8;  // d = 0.5, q = -16..15
  put_half(q8, 0x3800);
  for (int j = 0; j < 32; ++j) writer::put<std::int8_t>(q8, static_cast<std::int8_t>(j - 16));
  w.tensor("q8_0", {32}, tensor_type::q8_0, q8);

  std::vector<std::uint8_t> q41;  // d = 2, m = -1; low nibble j % 16, high nibble 15 - j % 16
  put_half(q41, 0x4000);
  put_half(q41, 0xbc00);
  for (int j = 0; j < 16; ++j) q41.push_back(static_cast<std::uint8_t>(j | ((15 - j) << 4)));
  w.tensor("q4_1", {32}, tensor_type::q4_1, q41);

  std::vector<std::uint8_t> q40;  // d = 0.25; x = (q - 8) d
  put_half(q40, 0x3400);
  for (int j = 0; j < 16; ++j) q40.push_back(static_cast<std::uint8_t>(j | ((15 - j) << 4)));
  w.tensor("q4_0", {32}, tensor_type::q4_0, q40);
  return w;
}

}  // namespace

TEST_CASE("metadata of every kind") {
  const smollm2::gguf::file f(write_file(sample().bytes(), "meta"));
  CHECK(f.version() == 3);
  CHECK(f.string("general.architecture") == "llama");
  CHECK(f.integer("llama.block_count") == 30);
  CHECK(f.real("llama.rope.freq_base") == 100000.0);
  CHECK(f.real("llama.block_count") == 30.0);
  CHECK_FALSE(f.boolean("tokenizer.ggml.add_bos_token"));
  CHECK(f.strings("tokenizer.ggml.tokens") == std::vector<std::string>{"a", "b", "<|im_end|>"});
  CHECK(f.integers("tokenizer.ggml.token_type") == std::vector<std::int64_t>{1, 1, 3});
  CHECK(f.tensors().size() == 6);
  CHECK(f.tensor("f32").dims == std::vector<std::int64_t>{2, 2});
}

TEST_CASE("every tensor type dequantises to the hand-computed values") {
  const smollm2::gguf::file f(write_file(sample().bytes(), "types"));
  CHECK(f.dequantize("f32") == std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f});
  CHECK(f.dequantize("f16") == std::vector<float>{1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f});
  CHECK(f.dequantize("bf16") == std::vector<float>{1.0f, -3.0f});
  const std::vector<float> q8 = f.dequantize("q8_0"), q41 = f.dequantize("q4_1"), q40 = f.dequantize("q4_0");
  for (int j = 0; j < 32; ++j) {
    CAPTURE(j);
    CHECK(q8[j] == 0.5f * static_cast<float>(j - 16));
    const int lo = j < 16 ? j : 15 - (j - 16);  // elements 0..15 low nibbles, 16..31 high nibbles
    CHECK(q41[j] == 2.0f * static_cast<float>(lo) - 1.0f);
    CHECK(q40[j] == 0.25f * static_cast<float>(lo - 8));
  }
  const std::int64_t right[] = {2, 2}, wrong[] = {4};
  CHECK(f.dequantize("f32", right).size() == 4);
  CHECK_THROWS_WITH(f.dequantize("f32", wrong), doctest::Contains("tensor 'f32' has dims [2, 2], expected [4]"));
}

TEST_CASE("half_to_float is exact on every half") {
  // Against the definition: sign, exponent, mantissa.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) continue;  // inf / NaN checked below
    const double mag = e ? std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15) : std::ldexp(m / 1024.0, -14);
    const double expected = (h & 0x8000) ? -mag : mag;
    if (smollm2::gguf::half_to_float(static_cast<std::uint16_t>(h)) != static_cast<float>(expected)) {
      FAIL_CHECK("half 0x" << std::hex << h);
      break;
    }
  }
  CHECK(std::isinf(smollm2::gguf::half_to_float(0x7c00)));
  CHECK(std::isnan(smollm2::gguf::half_to_float(0x7e00)));
}

TEST_CASE("malformed files fail with a message naming the file and the problem") {
  const auto bytes = sample().bytes();
  CHECK_THROWS_WITH(smollm2::gguf::file("/nonexistent/x.gguf"), doctest::Contains("cannot open"));

  auto bad_magic = bytes;
  bad_magic[0] = 'X';
  CHECK_THROWS_WITH(smollm2::gguf::file(write_file(bad_magic, "magic")), doctest::Contains("magic is not 'GGUF'"));

  auto bad_version = bytes;
  bad_version[4] = 9;
  CHECK_THROWS_WITH(smollm2::gguf::file(write_file(bad_version, "version")), doctest::Contains("version 9, expected 2 or 3"));

  const std::vector<std::uint8_t> header_only(bytes.begin(), bytes.begin() + 40);
  CHECK_THROWS_WITH(smollm2::gguf::file(write_file(header_only, "truncated")), doctest::Contains("truncated"));

  const std::vector<std::uint8_t> no_data(bytes.begin(), bytes.end() - 8);
  CHECK_THROWS_WITH(smollm2::gguf::file(write_file(no_data, "short")), doctest::Contains("runs past the end"));

  writer w;
  w.tensor("k_quant", {256}, static_cast<tensor_type>(12), std::vector<std::uint8_t>(144));  // Q4_K
  CHECK_THROWS_WITH(smollm2::gguf::file(write_file(w.bytes(), "type")), doctest::Contains("tensor type 12 is not supported"));

  const smollm2::gguf::file f(write_file(bytes, "lookups"));
  CHECK_THROWS_WITH(f.string("missing.key"), doctest::Contains("no metadata key 'missing.key'"));
  CHECK_THROWS_WITH(f.string("llama.block_count"), doctest::Contains("'llama.block_count' is not a string"));
  CHECK_THROWS_WITH(f.integer("some.negative"), doctest::Contains("not a non-negative integer"));
  CHECK_THROWS_WITH(f.tensor("nope"), doctest::Contains("no tensor named 'nope'"));
}
