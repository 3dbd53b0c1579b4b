#pragma once
// kvcap/layouts/kv_layout.hpp — the runtime tag of a contiguous K/V tensor's order.

namespace kvcap {

/// Order of a (tokens, heads, dim) tensor, as FlashInfer names it.
///   nhd: [tok][head][dim]   (token-major; one token's heads are adjacent)
///   hnd: [head][tok][dim]   (head-major; one head's tokens are adjacent)
enum class kv_layout { nhd, hnd };

constexpr const char* to_string(kv_layout l) { return l == kv_layout::nhd ? "nhd" : "hnd"; }

}  // namespace kvcap
