#pragma once
// kvcap/core/segment_sums.hpp — the sums over a head's slots that some scorers' inputs need,
// written once for every executor: what each slot adds, and how the sums become the input.
// The host executor, the device kernels (device/ordered_sums.cuh) and the device's host
// reference add these terms in slot order, so their inputs, and the scores, are bit-identical.
// Plain C++ with host/device annotations.

#include <math.h>

#include "config.hpp"

namespace kvcap {

/// What a slot adds to a component of the mean unit key (scorers::key_diff's anchor): x / |k|,
/// and nothing for a zero key. `x` is the component, `norm` is |k| of the slot.
struct unit_key_term {
  KVCAP_HOST_DEVICE static bool counts(float norm) { return norm > 0.f; }
  KVCAP_HOST_DEVICE static float of(float x, float norm) { return x / norm; }
};

/// The sums behind a composite scorer component's mean and inverse standard deviation, in
/// double, added in slot order.
struct component_sums {
  double sum = 0, sum_sq = 0;
  KVCAP_HOST_DEVICE void add(float c) { sum += c, sum_sq += static_cast<double>(c) * c; }
  /// {mean, inv_std} over `n` slots.
  KVCAP_HOST_DEVICE void finish(index_t n, float* stats) const {
    const double m = sum / static_cast<double>(n), var = sum_sq / static_cast<double>(n) - m * m;
    stats[0] = static_cast<float>(m);
    stats[1] = var > 0 ? static_cast<float>(1.0 / sqrt(var)) : 0.f;
  }
};

}  // namespace kvcap
