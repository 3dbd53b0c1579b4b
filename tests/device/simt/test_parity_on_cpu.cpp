// tests/device/simt/test_parity_on_cpu.cpp — test_device_parity.cu's cases with the kernels run
// by the CPU SIMT emulator (simt.hpp).
#include "simt.hpp"

#include "../test_device_parity.cu"
