#pragma once
// kvcap/scorers.hpp — every scorer.
#include "scorers/concept.hpp"
#include "scorers/key_diff.hpp"
#include "scorers/key_norm.hpp"
#include "scorers/recency.hpp"
#include "scorers/value_norm.hpp"
