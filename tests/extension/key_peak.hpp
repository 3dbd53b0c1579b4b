#pragma once
// tests/extension/key_peak.hpp — a scorer written outside kvcap, the way a user writes one:
// this header and its tests are all it takes, with no edit in include/kvcap. Both executors
// run it: the host compressor (tests/test_extension.cpp) and the device kernels
// (tests/device/test_device_parity.cu, on a GPU and on the CPU emulator).
//
// Keep the tokens whose key has the largest component in magnitude, max_d |k_d|. A few tokens
// (the first, delimiters) carry activations far above the rest and draw attention as sinks
// ("massive activations", Sun et al., 2024); an outlying key component is one place where that
// shows in the cache. It is here to show the extension point, not as a recommended policy.
//
// The score is a maximum of absolute values, exact in float, so the host and the device
// compute the same bits and keep the same tokens; ties (equal peaks) go to the smaller
// logical index, as for every scorer (kvcap/core/ranking.hpp).

#include <kvcap/scorers/concept.hpp>

namespace user {

struct key_peak {
  static constexpr kvcap::score_inputs inputs{};  // reads only the token's own key

  template <class Context>
  KVCAP_HOST_DEVICE float score(const Context& ctx, kvcap::index_t tok) const {
    const auto k = ctx.key(tok);
    float peak = 0.f;
    for (kvcap::index_t d = 0; d < k.size; ++d) {
      const float a = fabsf(k[d]);
      peak = a > peak ? a : peak;
    }
    return peak;
  }
};
static_assert(kvcap::scorer<key_peak>);

}  // namespace user
