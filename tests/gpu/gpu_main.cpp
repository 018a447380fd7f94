// Entry point of the GPU suites: without a GPU they exit with 77, which ctest reports as
// skipped (SKIP_RETURN_CODE), so CPU-only machines stay green and the device runs them all.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "framework/device.h"

int main(int argc, char** argv) {
  if (ft::cuda_device_count() == 0) {
    std::printf("no CUDA device: skipping the GPU suite\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
