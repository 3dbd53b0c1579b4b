// tokenizer.hpp — SmolLM2's byte-level BPE tokenizer, built from the GGUF's own vocabulary
// (tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "smollm"). It reproduces HF tokenizers
// configured as SmolLM2's tokenizer.json is:
//
//   1. special tokens (GGUF types CONTROL and USER_DEFINED) are cut out of the text verbatim,
//      leftmost-longest first, as HF's added-token matcher does;
//   2. every \p{N} codepoint becomes a piece of its own (Digits(individual_digits=True));
//   3. each piece is split into words by the GPT-2 regex (ByteLevel(use_regex=True))
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      implemented by hand in split_words, with the classes of unicode_classes.hpp;
//   4. each word's bytes become GPT-2 byte-level symbols, merged by BPE, lowest rank first.
//
// tests/fixtures/smollm2_tokenizer.txt holds ids made by HF tokenizers itself
// (tools/smollm2/make_tokenizer_fixture.py); tests/smollm2/test_tokenizer.cpp checks them.
//
// Bytes without a token: SmolLM2's vocabulary lacks 21 of the 256 byte symbols (the controls
// 0x04 0x06 0x13 0x14 0x16 0x1D, and 0xC0 0xC1 0xF1 0xF2 0xF5..0xFF, which valid UTF-8 never
// or almost never holds). HF's BPE, which has no unknown token here, leaves such a byte out of
// the word, so its neighbours can still merge; so does this one. These bytes are lost: for
// text holding them decode(encode(s)) != s. Every other byte string round-trips exactly.
//
// Invalid UTF-8: a byte that does not start a well-formed sequence (stray continuation byte,
// truncated or overlong sequence, surrogate, > U+10FFFF) is a unit of its own and counts as
// punctuation (neither letter, number nor space), then goes through byte-level BPE like any
// other byte. HF only ever sees valid UTF-8, so there is no reference for this case.
//
// The tokenizer is immutable after construction: encode/decode are const and thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gguf.hpp"
#include "unicode_classes.hpp"

namespace smollm2 {

/// The tokenizer's part of a GGUF, as stored there.
struct vocabulary {
  std::vector<std::string> tokens;   // byte-level strings, e.g. "Ġthe" for " the"
  std::vector<std::int32_t> types;   // 1 normal, 3 control (special), 4 user defined, ...
  std::vector<std::string> merges;   // "left right"; the rank of a merge is its index
  std::int32_t bos = -1, eos = -1;   // -1: none
  std::string pre;                   // pre-tokenizer name
  std::string model;                 // tokenizer model name
};

inline vocabulary vocabulary_from_gguf(const gguf::file& f) {
  vocabulary v;
  v.model = f.string("tokenizer.ggml.model");
  v.pre = f.has("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : "default";
  v.tokens = f.strings("tokenizer.ggml.tokens");
  for (std::int64_t t : f.integers("tokenizer.ggml.token_type")) v.types.push_back(static_cast<std::int32_t>(t));
  if (f.has("tokenizer.ggml.merges")) v.merges = f.strings("tokenizer.ggml.merges");
  auto id = [&](std::string_view key) -> std::int32_t {
    if (!f.has(key)) return -1;
    // An absurd id must stay absurd (and be rejected by the tokenizer), not wrap into range.
    const std::uint64_t most = std::numeric_limits<std::int32_t>::max();
    return static_cast<std::int32_t>(std::min(f.integer(key), most));
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  return v;
}

class tokenizer {
 public:
  static constexpr std::int32_t control = 3, user_defined = 4;  // GGUF token types

  explicit tokenizer(vocabulary v) : pieces_(std::move(v.tokens)), bos_(v.bos), eos_(v.eos) {
    if (v.model != "gpt2") fail("model '" + v.model + "' is not supported (only 'gpt2', byte-level BPE)");
    if (v.pre != "smollm") fail("pre-tokenizer '" + v.pre + "' is not supported (only 'smollm')");
    if (pieces_.empty()) fail("the vocabulary has no tokens");
    if (v.merges.empty()) fail("the vocabulary has no merges");
    if (v.types.size() != pieces_.size())
      fail(std::to_string(v.types.size()) + " token types for " + std::to_string(pieces_.size()) + " tokens");
    if (pieces_.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) fail("too many tokens");
    const auto n = static_cast<std::int32_t>(pieces_.size());
    if (bos_ < -1 || bos_ >= n) fail("bos id " + std::to_string(bos_) + " is out of range");
    if (eos_ < -1 || eos_ >= n) fail("eos id " + std::to_string(eos_) + " is out of range");

    ids_.reserve(pieces_.size());
    for (std::int32_t id = 0; id < n; ++id) ids_.emplace(pieces_[id], id);  // a duplicate keeps its first id

    for (int b = 0; b < 256; ++b) {  // -1 for the bytes the vocabulary lacks (see the top)
      std::string s;
      append_utf8(s, byte_char(static_cast<std::uint8_t>(b)));
      byte_ids_[b] = token_id(s);
    }

    merges_.reserve(v.merges.size());
    for (std::size_t rank = 0; rank < v.merges.size(); ++rank) {
      const std::string& m = v.merges[rank];
      const std::size_t space = m.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == m.size() ||
          m.find(' ', space + 1) != std::string::npos)
        bad_merge(rank, m, "is not two tokens separated by one space");
      const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
      const std::int32_t l = token_id(left), r = token_id(right);
      const std::int32_t joined = token_id(std::string(left) + std::string(right));
      if (l < 0 || r < 0) bad_merge(rank, m, "names a token that is not in the vocabulary");
      if (joined < 0) bad_merge(rank, m, "makes a token that is not in the vocabulary");
      // A repeated pair keeps its first (lowest) rank.
      merges_.emplace(pair_key(l, r), merge{static_cast<std::int32_t>(rank), joined});
    }

    bytes_.resize(pieces_.size());
    for (std::int32_t id = 0; id < n; ++id) {
      const bool special = v.types[id] == control || v.types[id] == user_defined;
      if (special && !pieces_[id].empty()) specials_.emplace_back(pieces_[id], id);
      bytes_[id] = special ? pieces_[id] : byte_level_decode(pieces_[id]);
    }
    // Longest first, so that the first special matching at a position is the longest one; equal
    // lengths by id, the order they were added in (std::stable_sort's result, without the
    // temporary buffer libstdc++ 12 takes through the deprecated std::get_temporary_buffer).
    std::sort(specials_.begin(), specials_.end(), [](const auto& a, const auto& b) {
      return a.first.size() != b.first.size() ? a.first.size() > b.first.size() : a.second < b.second;
    });
    for (const auto& [text, id] : specials_) special_first_[static_cast<std::uint8_t>(text[0])] = true;
  }

  /// Token ids of a text; special tokens written in it (e.g. "<|im_start|>") become their ids.
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> out;
    out.reserve(text.size() / 3 + 1);
    scratch work;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      if (special_first_[static_cast<std::uint8_t>(text[i])]) {
        if (const auto* s = special_at(text, i)) {
          encode_ordinary(text.substr(start, i - start), out, work);
          out.push_back(s->second);
          i += s->first.size();
          start = i;
          continue;
        }
      }
      ++i;
    }
    encode_ordinary(text.substr(start), out, work);
    return out;
  }

  /// The bytes the ids stand for (special tokens as their text). Decoding a slice of a
  /// sequence may cut a UTF-8 character; the bytes are returned as they are.
  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    for (std::int32_t id : ids) out += bytes_[check(id)];
    return out;
  }

  /// The vocabulary entry of an id, in its byte-level spelling ("Ġthe", "Ċ").
  std::string_view piece(std::int32_t id) const { return pieces_[check(id)]; }

  /// The id of a vocabulary entry (byte-level spelling), or -1.
  std::int32_t token_id(std::string_view piece) const {
    const auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }

  std::int32_t bos() const { return bos_; }
  std::int32_t eos() const { return eos_; }
  std::size_t size() const { return pieces_.size(); }

 private:
  struct merge {
    std::int32_t rank, id;
  };
  struct symbol {
    std::int32_t id, prev, next;  // id -1: merged into its left neighbour; next -1: the last
  };
  struct scratch {  // reused across the words of one encode call
    std::vector<symbol> symbols;
    std::vector<std::uint64_t> heap;  // (rank << 32 | position), smallest on top
  };
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  enum class kind : std::uint8_t { letter, number, space, other };

  [[noreturn]] static void fail(const std::string& what) {
    throw std::invalid_argument("smollm2 tokenizer: " + what);
  }
  [[noreturn]] static void bad_merge(std::size_t rank, const std::string& m, const char* why) {
    fail("merge " + std::to_string(rank) + " '" + m + "' " + why);
  }

  std::size_t check(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size())
      throw std::out_of_range("smollm2 tokenizer: token id " + std::to_string(id) + " is out of range");
    return static_cast<std::size_t>(id);
  }

  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32 | static_cast<std::uint32_t>(right);
  }

  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
  // (controls, space, DEL, NBSP, soft hyphen) for U+0100.. in byte order, so that every
  // token is printable text.
  static constexpr std::array<char32_t, 256> byte_chars = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  static char32_t byte_char(std::uint8_t b) { return byte_chars[b]; }
  static constexpr std::array<std::int16_t, 324> char_bytes = [] {  // the inverse; -1: none
    std::array<std::int16_t, 324> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_chars[b]] = static_cast<std::int16_t>(b);
    return t;
  }();

  static void append_utf8(std::string& s, char32_t c) {
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | c >> 6);
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | c >> 12);
      s += static_cast<char>(0x80 | (c >> 6 & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | c >> 18);
      s += static_cast<char>(0x80 | (c >> 12 & 0x3F));
      s += static_cast<char>(0x80 | (c >> 6 & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }

  /// The codepoint starting at s[i] and its length in bytes; length 0 if the bytes there are
  /// not well-formed UTF-8 (RFC 3629: no overlongs, surrogates or codepoints past U+10FFFF).
  static std::pair<char32_t, std::size_t> next_codepoint(std::string_view s, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[k]); };
    const std::uint8_t b = byte(i);
    if (b < 0x80) return {b, 1};
    std::size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    if (len == 0 || b > 0xF4 || i + len > s.size()) return {0, 0};
    char32_t c = b & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return {0, 0};
      c = c << 6 | (byte(i + k) & 0x3F);
    }
    static constexpr char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < least[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return {0, 0};
    return {c, len};
  }

  /// The class and byte length of the unit starting at s[i] (an invalid byte: other, 1).
  static std::pair<kind, std::size_t> unit_at(std::string_view s, std::size_t i) {
    static constexpr std::array<kind, 128> ascii = [] {
      std::array<kind, 128> t{};
      for (int c = 0; c < 128; ++c)
        t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? kind::letter
               : c >= '0' && c <= '9'                          ? kind::number
               : c == ' ' || (c >= '\t' && c <= '\r')          ? kind::space
                                                               : kind::other;
      return t;
    }();
    const auto b = static_cast<std::uint8_t>(s[i]);
    if (b < 0x80) return {ascii[b], 1};
    const auto [c, len] = next_codepoint(s, i);
    if (len == 0) return {kind::other, 1};
    const kind k = unicode::is_space(c)    ? kind::space
                   : unicode::is_letter(c) ? kind::letter
                   : unicode::is_number(c) ? kind::number
                                           : kind::other;
    return {k, len};
  }

  /// Length of a contraction ('s 't 're 've 'm 'll 'd, case-sensitive as in the regex) at s[i], or 0.
  static std::size_t contraction(std::string_view s, std::size_t i) {
    if (s[i] != '\'' || i + 1 >= s.size()) return 0;
    const char a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 < s.size()) {
      const std::string_view two = s.substr(i + 1, 2);
      if (two == "re" || two == "ve" || two == "ll") return 3;
    }
    return 0;
  }

  /// Calls word(w) for each word of a text holding no special token: the regex above, run on
  /// the pieces between numbers, every number a word of its own. The regex's alternatives are
  /// tried in its order, and the first that matches at a position wins, as in a backtracking
  /// engine; the subtle one is `\s+(?!\S)`, which backtracks (see the whitespace run below).
  template <class F>
  static void split_words(std::string_view s, F&& word) {
    std::size_t i = 0;
    while (i < s.size()) {
      const auto [k, len] = unit_at(s, i);
      std::size_t end = i + len;
      if (k == kind::number) {
        // Digits(individual_digits=True): one codepoint, never joined to a space before it.
      } else if (const std::size_t c = contraction(s, i)) {  // 's|'t|'re|'ve|'m|'ll|'d
        end = i + c;
      } else {
        kind run = k;  // ` ?\p{L}+` and ` ?[^\s\p{L}\p{N}]+` take one leading U+0020
        if (s[i] == ' ' && end < s.size()) {
          const kind after = unit_at(s, end).first;
          if (after == kind::letter || after == kind::other) run = after;
        }
        if (run == kind::letter || run == kind::other) {
          while (end < s.size()) {
            const auto [k2, len2] = unit_at(s, end);
            if (k2 != run) break;
            end += len2;
          }
        } else {  // a whitespace run
          std::size_t last = i;  // where its last codepoint starts
          kind after = kind::space;
          while (end < s.size()) {
            const auto [k2, len2] = unit_at(s, end);
            if (k2 != kind::space) {
              after = k2;
              break;
            }
            last = end;
            end += len2;
          }
          // `\s+(?!\S)`: before a non-space the run gives its last codepoint to the next word
          // (` ?\p{L}+` picks up a U+0020 there). A number ends the piece, like the text's end,
          // so the run keeps it. A single space before a non-space is `\s+` on its own.
          if (end < s.size() && after != kind::number && last > i) end = last;
        }
      }
      word(s.substr(i, end - i));
      i = end;
    }
  }

  void encode_ordinary(std::string_view text, std::vector<std::int32_t>& out, scratch& work) const {
    split_words(text, [&](std::string_view w) { bpe(w, out, work); });
  }

  /// BPE of one word: repeatedly merge the adjacent pair of lowest rank (the leftmost of
  /// equals), as HF does, with a heap so that long words (a 10 KB run of spaces) stay
  /// O(n log n). Stale heap entries are recognised by the pair no longer having that rank.
  void bpe(std::string_view word, std::vector<std::int32_t>& out, scratch& work) const {
    auto& sym = work.symbols;
    auto& heap = work.heap;
    sym.clear();
    heap.clear();
    for (const char c : word)
      if (const std::int32_t id = byte_ids_[static_cast<std::uint8_t>(c)]; id >= 0) sym.push_back({id, 0, 0});
    const auto n = static_cast<std::int32_t>(sym.size());
    if (n == 0) return;
    for (std::int32_t p = 0; p < n; ++p) {
      sym[p].prev = p - 1;
      sym[p].next = p + 1 < n ? p + 1 : -1;
    }
    const auto push = [&](std::int32_t left) {
      if (left < 0 || sym[left].next < 0) return;
      const auto it = merges_.find(pair_key(sym[left].id, sym[sym[left].next].id));
      if (it == merges_.end()) return;
      heap.push_back(static_cast<std::uint64_t>(it->second.rank) << 32 | static_cast<std::uint32_t>(left));
      std::push_heap(heap.begin(), heap.end(), std::greater<>{});
    };
    for (std::int32_t p = 0; p + 1 < n; ++p) push(p);

    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
      const std::uint64_t top = heap.back();
      heap.pop_back();
      const auto left = static_cast<std::int32_t>(top & 0xFFFFFFFFu);
      const auto rank = static_cast<std::int32_t>(top >> 32);
      symbol& a = sym[left];
      if (a.id < 0 || a.next < 0) continue;
      const auto it = merges_.find(pair_key(a.id, sym[a.next].id));
      if (it == merges_.end() || it->second.rank != rank) continue;
      symbol& b = sym[a.next];
      a.id = it->second.id;
      b.id = -1;
      a.next = b.next;
      if (a.next >= 0) sym[a.next].prev = left;
      push(a.prev);
      push(left);
    }
    for (std::int32_t p = 0; p >= 0; p = sym[p].next) out.push_back(sym[p].id);
  }

  /// The special token starting at text[i] (the longest, if several), or nullptr.
  const std::pair<std::string, std::int32_t>* special_at(std::string_view text, std::size_t i) const {
    for (const auto& s : specials_)
      if (text.substr(i).starts_with(s.first)) return &s;
    return nullptr;
  }

  /// A token's bytes: each character maps back through byte_chars. A token with a character
  /// outside that map is taken as it is spelled, as HF's ByteLevel decoder does.
  static std::string byte_level_decode(std::string_view piece) {
    std::string out;
    for (std::size_t i = 0; i < piece.size();) {
      const auto [c, len] = next_codepoint(piece, i);
      if (len == 0 || c >= char_bytes.size() || char_bytes[c] < 0) return std::string(piece);
      out += static_cast<char>(char_bytes[c]);
      i += len;
    }
    return out;
  }

  std::vector<std::string> pieces_;  // by id, as in the vocabulary
  std::vector<std::string> bytes_;   // by id, what it decodes to
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> ids_;
  std::unordered_map<std::uint64_t, merge> merges_;  // (left id, right id) -> rank, merged id
  std::array<std::int32_t, 256> byte_ids_{};         // the one-symbol token of each byte, or -1
  std::vector<std::pair<std::string, std::int32_t>> specials_;  // longest first
  std::array<bool, 256> special_first_{};                        // first bytes of specials
  std::int32_t bos_, eos_;
};

}  // namespace smollm2
