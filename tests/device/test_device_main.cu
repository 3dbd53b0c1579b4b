// tests/device/test_device_main.cu — the GPU tests' main: every case needs a GPU and is
// skipped without one; the executable then returns 77, which ctest reports as Skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include "device_harness.cuh"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  if (rc == 0 && kvcap_test::no_gpu()) {
    std::puts("kvcap device tests: no usable GPU (cudaGetDeviceCount failed or found none): all skipped");
    return 77;
  }
  return rc;
}
