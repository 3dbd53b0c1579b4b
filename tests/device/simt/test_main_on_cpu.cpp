// tests/device/simt/test_main_on_cpu.cpp — the device tests' main; under the emulator
// cudaGetDeviceCount finds one device, so every case runs.
#include "simt.hpp"

#include "../test_device_main.cu"
