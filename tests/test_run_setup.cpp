// What a recipe fixes before training: the device, the compute dtype and the model's attention
// kernel. A GPU that is not there, a 16-bit precision on the CPU, attention: flash or cudnn in
// fp32 or with a head size their kernels lack, and attention: cudnn in a build without cuDNN
// are errors that name the recipe key; on a machine without a GPU, device: auto trains on the
// CPU.
#include <doctest/doctest.h>

#include <utility>

#include "framework/train/run_setup.h"
#include "tests/support/error_message.h"

namespace ft::train {
namespace {

std::string device_error(const std::string& yaml) {
  return testing::error_message([&] { resolve_device(parse_recipe(yaml, "x.yaml")); });
}

TEST_CASE("resolve_device: the CPU, and errors naming the key for what cannot run") {
  CHECK(resolve_device(parse_recipe("device: cpu\n", "x.yaml")) == Device::cpu());
#ifdef FLASHTRAIN_HAS_CUDNN
  const char* fused[] = {"flash", "cudnn"};
#else
  CHECK(device_error("device: cpu\nattention: cudnn\n")
            .find("x.yaml: attention: cudnn is not in this build (cuDNN 9's headers were not found when it was "
                  "configured; use attention: flash or math)") != std::string::npos);
  const char* fused[] = {"flash"};
#endif
  for (const char* kernel : fused)
    CHECK(device_error(str("device: cpu\nattention: ", kernel, "\n"))
              .find(str("x.yaml: attention: ", kernel,
                        " needs a GPU and precision bf16 or fp16 (its kernels take 16-bit inputs), got precision fp32 "
                        "on cpu (use attention: math)")) != std::string::npos);
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

TEST_CASE("model_config takes the attention kernel; flash and cudnn need a head size of 64 or 128") {
  const std::string tiny = "model:\n  size: tiny\n";
  CHECK(model_config(parse_recipe(tiny, "x.yaml"), 100).attention == AttentionKernel::math);
  for (const auto& [name, kernel] :
       {std::pair<std::string, AttentionKernel>{"flash", AttentionKernel::flash}, {"cudnn", AttentionKernel::cudnn}}) {
    CAPTURE(name);
    const std::string fused = "attention: " + name + "\nprecision: bf16\n" + tiny;
    CHECK(model_config(parse_recipe(fused + "  n_head: 1\n", "x.yaml"), 100).attention == kernel);
    CHECK(testing::error_message([&] { model_config(parse_recipe(fused, "x.yaml"), 100); })
              .find("x.yaml: attention: " + name +
                    " needs a head size of 64 or 128, got 64 / 4 = 16 (model.n_embd / model.n_head; or use "
                    "attention: math)") != std::string::npos);
  }
}

TEST_CASE("compute_dtype follows precision") {
  CHECK(compute_dtype(parse_recipe("precision: fp32\n", "x.yaml")) == DType::f32);
  CHECK(compute_dtype(parse_recipe("precision: bf16\n", "x.yaml")) == DType::bf16);
  CHECK(compute_dtype(parse_recipe("precision: fp16\n", "x.yaml")) == DType::f16);
}

}  // namespace
}  // namespace ft::train
