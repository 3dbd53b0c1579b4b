// text.hpp — the real text the engine is evaluated on, and the prompts built from it.
//
// Documents are Debian's license texts (/usr/share/common-licenses, in every Debian
// install): long, real English prose. A file is read as paragraphs (blank-line separated,
// hard wraps joined), split into sentences so that a needle is inserted between sentences.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenizer.hpp"

namespace smollm2 {

inline const std::vector<std::string>& default_documents() {
  static const std::vector<std::string> docs = {
      "/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GFDL-1.3",
      "/usr/share/common-licenses/LGPL-2.1", "/usr/share/common-licenses/Apache-2.0",
      "/usr/share/common-licenses/MPL-2.0"};
  return docs;
}

/// The file's paragraphs, whitespace collapsed.
inline std::vector<std::string> read_paragraphs(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read document " + path);
  std::vector<std::string> out;
  std::string line, paragraph;
  const auto flush = [&] {
    if (!paragraph.empty()) out.push_back(paragraph);
    paragraph.clear();
  };
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string w;
    bool any = false;
    while (words >> w) {
      paragraph += (paragraph.empty() ? "" : " ") + w;
      any = true;
    }
    if (!any) flush();
  }
  flush();
  return out;
}

/// Sentences of a paragraph: split after '.', '!', '?' or ';' followed by a space.
inline std::vector<std::string> split_sentences(const std::string& paragraph) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i + 1 < paragraph.size(); ++i)
    if ((paragraph[i] == '.' || paragraph[i] == '!' || paragraph[i] == '?' || paragraph[i] == ';') &&
        paragraph[i + 1] == ' ') {
      out.push_back(paragraph.substr(start, i + 1 - start));
      start = i + 2;
    }
  if (start < paragraph.size()) out.push_back(paragraph.substr(start));
  return out;
}

/// A document as token ids, with the token offsets where sentences begin.
struct tokenized_document {
  std::string path;
  std::vector<std::int32_t> ids;
  std::vector<std::size_t> sentence_starts;
};

/// Tokenizes `path` sentence by sentence (" " between sentences, "\n\n" after paragraphs),
/// starting at paragraph `first_paragraph`, until at least `max_tokens` tokens (0 = all).
inline tokenized_document tokenize_document(const tokenizer& tok, const std::string& path, std::size_t max_tokens = 0,
                                            std::size_t first_paragraph = 0) {
  tokenized_document d{path, {}, {}};
  const std::vector<std::string> paragraphs = read_paragraphs(path);
  for (std::size_t p = first_paragraph; p < paragraphs.size(); ++p) {
    const std::vector<std::string> sentences = split_sentences(paragraphs[p]);
    for (std::size_t s = 0; s < sentences.size(); ++s) {
      d.sentence_starts.push_back(d.ids.size());
      const std::string text = (s ? " " : "") + sentences[s] + (s + 1 == sentences.size() ? "\n\n" : "");
      const std::vector<std::int32_t> ids = tok.encode(text);
      d.ids.insert(d.ids.end(), ids.begin(), ids.end());
    }
    if (max_tokens && d.ids.size() >= max_tokens) break;
  }
  return d;
}

/// A passkey-retrieval prompt: [system + instruction] [haystack with the needle sentence at
/// `depth`] [question + "The secret passkey is"]. The first and last parts are protected.
struct passkey_prompt {
  std::vector<std::int32_t> ids;
  std::size_t system_tokens = 0, haystack_tokens = 0, question_tokens = 0;
  std::size_t needle_at = 0;  ///< token offset of the needle in the prompt
  std::string passkey;
};

inline passkey_prompt make_passkey_prompt(const tokenizer& tok, const tokenized_document& doc, std::size_t tokens,
                                          double depth, const std::string& passkey) {
  static const std::string system =
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
      "<|im_start|>user\nRead the following document carefully. A question about it comes after it.\n\n";
  static const std::string question =
      "\n\nQuestion: What is the secret passkey mentioned in the document?<|im_end|>\n"
      "<|im_start|>assistant\nThe secret passkey is";
  if (doc.ids.size() < tokens)
    throw std::invalid_argument("passkey haystack: " + doc.path + " has " + std::to_string(doc.ids.size()) +
                                " tokens, expected >= " + std::to_string(tokens));
  passkey_prompt p;
  p.passkey = passkey;
  const std::vector<std::int32_t> sys = tok.encode(system), q = tok.encode(question);
  const std::vector<std::int32_t> needle = tok.encode(" The secret passkey is " + passkey + ". Remember it.");
  // The sentence boundary nearest depth × tokens.
  std::size_t at = 0;
  for (const std::size_t s : doc.sentence_starts)
    if (s <= tokens && (at == 0 || std::abs(static_cast<double>(s) - depth * tokens) <
                                       std::abs(static_cast<double>(at) - depth * tokens)))
      at = s;
  p.ids = sys;
  p.ids.insert(p.ids.end(), doc.ids.begin(), doc.ids.begin() + static_cast<std::ptrdiff_t>(at));
  p.needle_at = p.ids.size();
  p.ids.insert(p.ids.end(), needle.begin(), needle.end());
  p.ids.insert(p.ids.end(), doc.ids.begin() + static_cast<std::ptrdiff_t>(at),
               doc.ids.begin() + static_cast<std::ptrdiff_t>(tokens));
  p.system_tokens = sys.size();
  p.haystack_tokens = p.ids.size() - sys.size();
  p.ids.insert(p.ids.end(), q.begin(), q.end());
  p.question_tokens = q.size();
  return p;
}

}  // namespace smollm2
