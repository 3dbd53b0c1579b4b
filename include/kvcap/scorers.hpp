#pragma once
// kvcap/scorers.hpp — every scorer.
#include "scorers/blend.hpp"
#include "scorers/concept.hpp"
#include "scorers/forced_keep.hpp"
#include "scorers/key_diff.hpp"
#include "scorers/key_norm.hpp"
#include "scorers/observation_window.hpp"
#include "scorers/pooled_value_norm.hpp"
#include "scorers/recency.hpp"
#include "scorers/spatial_redundancy.hpp"
#include "scorers/temporal_redundancy.hpp"
#include "scorers/value_norm.hpp"
