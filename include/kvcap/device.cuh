#pragma once
// kvcap/device.cuh — umbrella header of the device path (compile with nvcc, --fmad=false and
// --expt-relaxed-constexpr; see kvcap/device/score_kernel.cuh). The host path is <kvcap.hpp>.
#include "device/batch.cuh"
#include "device/compressor.cuh"
#include "device/counting_resource.cuh"
#include "device/ragged_plan.cuh"
#include "device/rank_bits.cuh"
#include "device/reference.cuh"
#include "device/status.cuh"
#include "device/workspace_layout.cuh"
#include "layouts/paged.hpp"
#include "layouts/varlen.hpp"
#include "policies.hpp"
