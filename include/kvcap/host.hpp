#pragma once
// kvcap/host.hpp — the host path: every policy plus the Eigen-based host compressor.
#include "host/compressor.hpp"
#include "host/counting_resource.hpp"
#include "host/eigen_views.hpp"
#include "host/reference_attention.hpp"
#include "policies.hpp"
