// The external K/V dump reader (tools/fidelity/kv_dump.hpp) on a small SYNTHETIC fixture
// (tests/fixtures/kv_dump_small, written by its make_fixture.py): k[l, t, h, d] =
// 1000 l + 10 t + d + 0.5 h, v = −k; layer 0 float32, layer 1 float16.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "fidelity/kv_dump.hpp"

namespace {
const std::filesystem::path fixture = KVCAP_FIXTURE_DIR "/kv_dump_small";
}

TEST_CASE("read_kv_dump reads shapes, values of both dtypes, probes, pre-pass probes and metadata") {
  const kvcap_tools::kv_dump d = kvcap_tools::read_kv_dump(fixture);
  CHECK(d.layers == 2);
  CHECK(d.kv_heads == 1);
  CHECK(d.q_heads == 2);
  CHECK(d.head_dim == 4);
  REQUIRE(d.num_tokens() == 15);
  REQUIRE(d.k.size() == 2);
  CHECK(d.k[0].descr == "<f4");
  CHECK(d.k[1].descr == "<f2");
  // k[l=0, t=3, h=0, d=2] = 32; k[l=1, t=14, h=0, d=3] = 1143 (exact in fp16); v = −k.
  CHECK(d.k[0].at((3 * 1 + 0) * 4 + 2) == 32.0);
  CHECK(d.k[1].at((14 * 1 + 0) * 4 + 3) == 1143.0);
  CHECK(d.v[1].at((14 * 1 + 0) * 4 + 3) == -1143.0);
  REQUIRE(d.has_probes());
  CHECK(d.probes.shape == std::vector<std::int64_t>{2, 3, 2, 4});
  CHECK(d.probes.at(2 * 3 * 2 * 4 - 1) == 47.0);
  REQUIRE(d.has_prepass_probes());  // 0.5 − the probes
  CHECK(d.prepass_probes.shape == d.probes.shape);
  CHECK(d.prepass_probes.at(0) == 0.5);
  CHECK(d.prepass_probes.at(2 * 3 * 2 * 4 - 1) == -46.5);
  // Metadata from the segments: text(2, protected), video 2×2×3, text(1, protected).
  REQUIRE(d.meta.size() == 15);
  CHECK(d.meta[0].is_protected);
  CHECK(d.meta[1].kind == kvcap::segment_kind::text);
  CHECK(d.meta[2].kind == kvcap::segment_kind::video);
  CHECK(!d.meta[2].is_protected);
  // token 2 + 6 + 4 = 12: frame 1, row 1, col 1; video starts at position 2.
  CHECK(d.meta[12].frame == 1);
  CHECK(d.meta[12].row == 1);
  CHECK(d.meta[12].col == 1);
  CHECK(d.meta[12].position == kvcap::rope_position{3, 3, 3});
  // The question follows at 2 + max(2, 2, 3) = 5.
  CHECK(d.meta[14].position == kvcap::rope_position{5, 5, 5});
  CHECK(d.meta[14].is_protected);
}

TEST_CASE("read_kv_dump names what is wrong") {
  const auto dir = std::filesystem::temp_directory_path() / "kvcap_bad_dump";
  std::filesystem::create_directories(dir);
  for (const auto& entry : std::filesystem::directory_iterator(fixture))
    std::filesystem::copy_file(entry.path(), dir / entry.path().filename(),
                               std::filesystem::copy_options::overwrite_existing);
  const auto rewrite = [&](const std::string& from, const std::string& to) {
    std::ifstream in(fixture / "manifest.txt");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text.replace(text.find(from), from.size(), to);
    std::ofstream(dir / "manifest.txt") << text;
  };
  const auto message = [&] {
    try {
      kvcap_tools::read_kv_dump(dir);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  rewrite("prepass_probes prepass_probes.npy", "prepass_probes layer0_k.npy");
  CHECK(message().find("layer0_k.npy: shape must be the shape of probes.npy") != std::string::npos);
  rewrite("probes probes.npy\n", "");
  CHECK(message().find("prepass_probes without probes") != std::string::npos);
  rewrite("head_dim 4", "head_dim 5");  // arrays no longer match
  CHECK(message().find("layer0_k.npy: shape must be (tokens=15") != std::string::npos);
  rewrite("segment video 2 2 3", "segment video 2 2 4");  // 2 + 16 + 1 = 19 tokens, arrays hold 15
  CHECK(message().find("tokens=19") != std::string::npos);
  rewrite("k 1 layer1_k.npy\n", "");
  CHECK(message().find("missing 'k 1 FILE'") != std::string::npos);
  rewrite("kvcap-dump 1", "kvcap-dump 2");
  CHECK(message().find("unsupported version") != std::string::npos);
  std::filesystem::remove_all(dir);
}
