// SmolLM2's tokenizer (examples/smollm2/tokenizer.hpp) against reference ids made by HF
// tokenizers (tests/fixtures/smollm2_tokenizer.txt, tools/smollm2/make_tokenizer_fixture.py).
// Needs the GGUF: $KVCAP_SMOLLM2_GGUF, else ~/.cache/kvcap/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf;
// without it the program exits 77 (ctest: Skipped) after the tests that need no GGUF.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "smollm2/tokenizer.hpp"

namespace {

std::optional<std::filesystem::path> smollm2_gguf() {
  std::filesystem::path p;
  if (const char* env = std::getenv("KVCAP_SMOLLM2_GGUF"); env && *env) {
    p = env;
  } else if (const char* home = std::getenv("HOME")) {
    p = std::filesystem::path(home) / ".cache/kvcap/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  }
  if (p.empty() || !std::filesystem::is_regular_file(p)) return std::nullopt;
  return p;
}

const smollm2::vocabulary& vocab() {
  static const smollm2::vocabulary v = smollm2::vocabulary_from_gguf(smollm2::gguf::file(*smollm2_gguf()));
  return v;
}

const smollm2::tokenizer& tok() {
  static const smollm2::tokenizer t(vocab());
  return t;
}

struct fixture_case {
  std::string text;
  std::vector<std::int32_t> ids;
};

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<fixture_case> read_fixture() {
  const std::string path = KVCAP_FIXTURE_DIR "/smollm2_tokenizer.txt";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<fixture_case> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string tag, hex;
    words >> tag;
    if (tag == "text") {
      words >> hex;  // empty for the empty text
      cases.push_back({unhex(hex), {}});
    } else if (tag == "ids" && !cases.empty()) {
      for (std::int32_t id; words >> id;) cases.back().ids.push_back(id);
    } else {
      throw std::runtime_error(path + ": unexpected line '" + line + "'");
    }
  }
  return cases;
}

}  // namespace

TEST_CASE("unicode classes: hand-picked codepoints") {
  using namespace smollm2::unicode;
  for (char32_t c : {U'a', U'Z', U'é', U'ß', U'Ω', U'я', U'中', U'ｶ', U'ª', U'ʰ', U'𝔸'})
    CHECK(is_letter(c));
  for (char32_t c : {U'0', U'9', U'٣', U'½', U'²', U'Ⅻ', U'①', U'𝟘'}) CHECK(is_number(c));
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u0085', U'\u00A0', U'\u1680', U'\u2003', U'\u2028',
                     U'\u202F', U'\u3000'})
    CHECK(is_space(c));
  // Punctuation, format and control characters, symbols, a combining mark, the last codepoint.
  for (char32_t c : {U'!', U'_', U'\'', U'\u00AD', U'\u200B', U'\x1C', U'❤', U'🦀', U'\u0301', U'€',
                     char32_t{0x10FFFF}}) {
    CHECK_FALSE(is_letter(c));
    CHECK_FALSE(is_number(c));
    CHECK_FALSE(is_space(c));
  }
}

TEST_CASE("the SmolLM2 GGUF is present (else: skipped)") {
  if (!smollm2_gguf()) {
    MESSAGE("no SmolLM2 GGUF (set KVCAP_SMOLLM2_GGUF): skipping the tokenizer tests");
    std::exit(77);
  }
}

TEST_CASE("encode matches HF tokenizers on every fixture case, and decode inverts it") {
  const auto cases = read_fixture();
  REQUIRE(cases.size() >= 20);
  // The control bytes SmolLM2's vocabulary has no token for (one case holds them): HF drops them.
  const std::string untokenizable = "\x04\x06\x13\x14\x16\x1d";
  for (const auto& c : cases) {
    CAPTURE(c.text);
    CHECK(tok().encode(c.text) == c.ids);
    std::string kept = c.text;
    std::erase_if(kept, [&](char b) { return untokenizable.find(b) != std::string::npos; });
    CHECK(tok().decode(tok().encode(c.text)) == kept);
  }
}

TEST_CASE("special tokens") {
  CHECK(tok().size() == 49152);
  CHECK(tok().bos() == 1);
  CHECK(tok().eos() == 2);
  CHECK(tok().token_id("<|endoftext|>") == 0);
  CHECK(tok().token_id("<|im_start|>") == 1);
  CHECK(tok().token_id("<|im_end|>") == 2);
  CHECK(tok().piece(2) == "<|im_end|>");
  CHECK(tok().encode("<|im_start|>") == std::vector<std::int32_t>{1});
  CHECK(tok().encode("<|im_end|><|endoftext|>") == std::vector<std::int32_t>{2, 0});
  CHECK(tok().encode("<|im_start") != std::vector<std::int32_t>{1});
  const std::vector<std::int32_t> ids = {1, 2, 0};
  CHECK(tok().decode(ids) == "<|im_start|><|im_end|><|endoftext|>");
  CHECK(tok().token_id("Ġthe") >= 0);
  CHECK(tok().decode(std::vector<std::int32_t>{tok().token_id("Ġthe")}) == " the");
  CHECK(tok().token_id("no such token") == -1);
  CHECK_THROWS_AS(tok().piece(49152), std::out_of_range);
  CHECK_THROWS_AS(tok().decode(std::vector<std::int32_t>{-1}), std::out_of_range);
}

TEST_CASE("invalid UTF-8 round-trips byte for byte") {
  // Bytes that are not well-formed UTF-8 but do have a token (see tokenizer.hpp).
  for (std::string s : {std::string("\x80\xbf abc"), std::string("caf\xc3"), std::string("\x80\x80x \xe2\x82"),
                        std::string("\xed\xa0\x80 surrogate"), std::string("\xe0\x80\xaf overlong"),
                        std::string("\xf4\x90\x80\x80 > U+10FFFF"), std::string("a\0b", 3)}) {
    CAPTURE(s);
    CHECK(tok().decode(tok().encode(s)) == s);
  }
}

TEST_CASE("bytes without a token are left out, and their neighbours still merge, as in HF") {
  CHECK(tok().encode("!\x04!") == tok().encode("!!"));  // HF: [10095] '!!' for both
  CHECK(tok().encode("!!") == std::vector<std::int32_t>{10095});
  CHECK(tok().encode("\xff\xfe\xc0").empty());
  CHECK(tok().decode(tok().encode("a\x06" "b\xf5" "c")) == "abc");
}

TEST_CASE("the constructor rejects what it does not support") {
  auto with = [](auto change) {
    smollm2::vocabulary v = vocab();
    change(v);
    return v;
  };
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.pre = "llama3"; })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.model = "llama"; })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.merges.clear(); })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.merges[5] = "Ġt"; })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.merges[5] = "Ġ qqqqqq"; })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.types.pop_back(); })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(with([](auto& v) { v.eos = 49152; })), std::invalid_argument);
  CHECK_THROWS_AS(smollm2::tokenizer(smollm2::vocabulary{}), std::invalid_argument);
}

TEST_CASE("speed: encoding the whole GPL-3") {
  std::ifstream in("/usr/share/common-licenses/GPL-3");
  if (!in) {
    MESSAGE("no /usr/share/common-licenses/GPL-3: not timed");
    return;
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok().encode(text);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("encoded GPL-3 (" << text.size() << " bytes) into " << ids.size() << " tokens in " << ms << " ms");
  CHECK(tok().decode(ids) == text);
}
