// What a recipe fixes before training: the device and the compute dtype. A GPU that is not
// there, a 16-bit precision on the CPU and an attention kernel not built yet are errors that
// name the recipe key; on a machine without a GPU, device: auto trains on the CPU.
#include <doctest/doctest.h>

#include "framework/train/run_setup.h"
#include "tests/support/error_message.h"

namespace ft::train {
namespace {

std::string device_error(const std::string& yaml) {
  return testing::error_message([&] { resolve_device(parse_recipe(yaml, "x.yaml")); });
}

TEST_CASE("resolve_device: the CPU, and errors naming the key for what cannot run") {
  CHECK(resolve_device(parse_recipe("device: cpu\n", "x.yaml")) == Device::cpu());
  CHECK(device_error("attention: flash\n").find("x.yaml: attention: flash is not built yet") != std::string::npos);
  if (cuda_available()) return;  // the rest describes a machine without a GPU
  CHECK(resolve_device(parse_recipe("device: auto\n", "x.yaml")) == Device::cpu());
  CHECK(device_error("device: cuda\n")
            .find("x.yaml: device: cuda requested, but this build or machine has no CUDA "
                  "GPU") != std::string::npos);
  CHECK(device_error("device: cuda:2\n").find("device: cuda:2 requested") != std::string::npos);
  for (const char* precision : {"bf16", "fp16"})
    CHECK(
        device_error(str("precision: ", precision, "\n")).find(str("x.yaml: precision: ", precision, " needs a GPU")) !=
        std::string::npos);
}

TEST_CASE("compute_dtype follows precision") {
  CHECK(compute_dtype(parse_recipe("precision: fp32\n", "x.yaml")) == DType::f32);
  CHECK(compute_dtype(parse_recipe("precision: bf16\n", "x.yaml")) == DType::bf16);
  CHECK(compute_dtype(parse_recipe("precision: fp16\n", "x.yaml")) == DType::f16);
}

}  // namespace
}  // namespace ft::train
