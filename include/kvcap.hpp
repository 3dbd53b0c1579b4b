#pragma once
// kvcap.hpp — umbrella header of the host path. Device code includes <kvcap/device.cuh>.
#include "kvcap/host.hpp"
