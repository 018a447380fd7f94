// What a recipe fixes before training: the device, the compute dtype and the model's attention
// What a recipe fixes before training: the device, the compute dtype and the model's attention
// kernel, for GPT-2 and DistilBERT alike. A GPU that is not there, a 16-bit precision on the CPU,
// attention: flash or cudnn in fp32 or with a head size their kernels lack (a pretrained model's,
// here; test_recipe has the recipe's own shapes), and attention: cudnn in a build without cuDNN
// are errors that name the recipe key; on a machine without a GPU, device: auto trains on the
// CPU. A pretrained model keeps the recipe's dropout and kernel.
#include <doctest/doctest.h>

#include <utility>

#include "framework/train/run_setup.h"
#include "models/distilbert/distilbert_hf.h"
#include "models/gpt2/gpt2_hf.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

namespace ft::train {
namespace {

std::string device_error(const std::string& yaml) {
  return testing::error_message([&] { resolve_device(parse_recipe(yaml, "x.yaml")); });
}

TEST_CASE("resolve_device: the CPU, and errors naming the key for what cannot run") {
  CHECK(resolve_device(parse_recipe("device: cpu\n", "x.yaml")) == Device::cpu());
#ifdef FLASHTRAIN_HAS_CUDNN
  CHECK(device_error("device: cpu\nattention: cudnn\nmodel: {n_head: 1}\n")
            .find("x.yaml: attention: cudnn needs a GPU and precision bf16 or fp16 (its kernels take 16-bit inputs), "
                  "got precision fp32 on cpu (use attention: math)") != std::string::npos);
#else
  CHECK(device_error("device: cpu\nattention: cudnn\nmodel: {n_head: 1}\n")
            .find("x.yaml: attention: cudnn is not in this build (cuDNN 9's headers were not found when it was "
                  "configured; use attention: flash or math)") != std::string::npos);
#endif
  // One check for both architectures (their shapes have heads of 64, which flash takes).
  for (const char* model : {"model: {n_head: 1}\n",
                            "model: {arch: distilbert, size: distilbert-base}\n"
                            "data: {tokenizer: bert, packing: padded}\n"}) {
    CAPTURE(model);
    CHECK(device_error(str("device: cpu\nattention: flash\n", model))
              .find("x.yaml: attention: flash needs a GPU and precision bf16 or fp16 (its kernels take 16-bit "
                    "inputs), got precision fp32 on cpu (use attention: math)") != std::string::npos);
  }
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

TEST_CASE("model_config and distilbert_model_config take the recipe's attention kernel") {
  CHECK(model_config(parse_recipe("attention: math\nmodel:\n  size: tiny\n", "x.yaml"), 100).attention ==
        AttentionKernel::math);
  // auto, the default: flash in 16-bit precision with heads of 64 or 128, else math.
  CHECK(parse_recipe("", "x.yaml").attention == "auto");
  CHECK(model_config(parse_recipe("model:\n  n_head: 1\n", "x.yaml"), 100).attention == AttentionKernel::math);
  CHECK(model_config(parse_recipe("precision: bf16\nmodel:\n  n_head: 1\n", "x.yaml"), 100).attention ==
        AttentionKernel::flash);
  CHECK(model_config(parse_recipe("precision: fp16\nmodel:\n  size: tiny\n", "x.yaml"), 100).attention ==
        AttentionKernel::math);  // tiny's heads are 16 wide
  CHECK(resolve_device(parse_recipe("device: cpu\nmodel:\n  n_head: 1\n", "x.yaml")) == Device::cpu());
  CHECK(
      model_config(parse_recipe("attention: flash\nprecision: bf16\nmodel:\n  n_head: 1\n", "x.yaml"), 100).attention ==
      AttentionKernel::flash);
  CHECK(
      model_config(parse_recipe("attention: cudnn\nprecision: bf16\nmodel:\n  n_head: 1\n", "x.yaml"), 100).attention ==
      AttentionKernel::cudnn);
  // The DistilBERT recipe trains with flash; --set attention=math is the comparison's other side.
  const std::string recipe = std::string(FLASHTRAIN_SOURCE_DIR) + "/recipes/distilbert-wikitext2.yaml";
  const models::DistilBertConfig flash = distilbert_model_config(load_recipe(recipe), 30522);
  CHECK(flash.attention == AttentionKernel::flash);
  CHECK(flash.dim / flash.n_heads == 64);
  CHECK(distilbert_model_config(load_recipe(recipe, {"attention=math"}), 30522).attention == AttentionKernel::math);
}

TEST_CASE("a pretrained model takes the recipe's dropout and kernel; flash checks its config.json's head size") {
  const testing::TempDir dir;
  auto gpt2_dir = [&](int64_t n_head) {
    models::Gpt2Config c = models::gpt2_config("tiny");
    c.vocab_size = 100;
    c.n_head = n_head;
    Generator gen(1);
    const std::string path = dir.path() + "/gpt2-" + std::to_string(n_head);
    models::export_hf_gpt2(models::Gpt2(c, gen), path);
    return path;
  };
  const std::string flash = "attention: flash\nprecision: bf16\nmodel:\n  dropout: 0.25\n  init_from: ";
  const models::Gpt2Config gpt2 = model_config(parse_recipe(flash + gpt2_dir(1) + "\n", "x.yaml"), 100);
  CHECK(gpt2.attention == AttentionKernel::flash);
  CHECK(gpt2.dropout == 0.25);
  CHECK(testing::error_message([&] { model_config(parse_recipe(flash + gpt2_dir(4) + "\n", "x.yaml"), 100); })
            .find("x.yaml: attention: flash needs a head size of 64 or 128, got 64 / 4 = 16 (the model's width / "
                  "heads; or use attention: math)") != std::string::npos);

  models::DistilBertConfig c = models::distilbert_config("tiny");
  c.vocab_size = 100;
  c.n_heads = 1;
  Generator gen(2);
  models::export_hf_distilbert(models::DistilBert(c, gen), dir.path() + "/distilbert");
  const models::DistilBertConfig bert =
      distilbert_model_config(parse_recipe(flash + dir.path() +
                                               "/distilbert\n  arch: distilbert\n"
                                               "data: {tokenizer: bert, packing: padded}\n",
                                           "x.yaml"),
                              100);
  CHECK(bert.attention == AttentionKernel::flash);
  CHECK(bert.dropout == 0.25);
}

TEST_CASE("compute_dtype follows precision") {
  CHECK(compute_dtype(parse_recipe("precision: fp32\n", "x.yaml")) == DType::f32);
  CHECK(compute_dtype(parse_recipe("precision: bf16\n", "x.yaml")) == DType::bf16);
  CHECK(compute_dtype(parse_recipe("precision: fp16\n", "x.yaml")) == DType::f16);
}

}  // namespace
}  // namespace ft::train
