// framework/train/model_step: a model started from model.init_from (a Hugging Face folder) gets
// the pretrained weights and the recipe's training choices, for GPT-2 and DistilBERT alike: its
// dropout changes the training loss (config.json's rate used to win in fp32, where the imported
// model is the one that trains).
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "data/loader.h"
#include "framework/train/model_step.h"
#include "framework/train/run_setup.h"
#include "models/distilbert/distilbert_hf.h"
#include "models/gpt2/gpt2_hf.h"
#include "tests/support/temp_dir.h"

namespace ft::train {
namespace {

// A recipe of `arch` on the CPU in fp32 from the pretrained folder, with this dropout.
Recipe pretrained_recipe(const std::string& arch, const std::string& folder, double dropout) {
  const std::string data = arch == "distilbert"
                               ? "data: {tokenizer: bert, packing: padded, seq_len: 32, mlm_probability: 0.5}\n"
                               : "data: {seq_len: 32}\n";
  return parse_recipe(str("model: {arch: ", arch, ", init_from: ", folder, ", dropout: ", dropout, "}\n", data),
                      "x.yaml");
}

// The training loss of one batch of 32 ids (GPT-2 predicts the next one; DistilBERT's step
// masks half of them) with a dropout generator, and the first parameter's values.
struct FirstStep {
  double loss;
  std::vector<double> first_parameter;
};

FirstStep first_step(const Recipe& r) {
  const std::unique_ptr<data::Tokenizer> tokenizer = recipe_tokenizer(r);
  Generator init(1), dropout(2);
  const std::unique_ptr<ModelStep> step = make_model_step(r, *tokenizer, init, DType::f32, Device::cpu());
  std::vector<int32_t> ids, targets;
  for (int32_t i = 0; i < 33; ++i) ids.push_back(1000 + 37 * i);
  data::Batch batch;
  batch.inputs = Tensor::from_ints(std::vector<int32_t>(ids.begin(), ids.end() - 1), {1, 32});
  if (r.model.arch == "gpt2")
    batch.targets = Tensor::from_ints(std::vector<int32_t>(ids.begin() + 1, ids.end()), {1, 32});
  return {step->loss(batch, &dropout).item(), step->parameters().front().tensor.to_double_vector()};
}

TEST_CASE("make_model_step: a model.init_from model has the pretrained weights and the recipe's dropout") {
  const testing::TempDir dir;
  for (const std::string arch : {"gpt2", "distilbert"}) {
    CAPTURE(arch);
    const std::string folder = dir.path() + "/" + arch;
    Generator gen(3);
    std::vector<double> pretrained;
    if (arch == "gpt2") {
      models::Gpt2Config c = models::gpt2_config("tiny");
      c.n_layer = 1;
      const models::Gpt2 model(c, gen);
      models::export_hf_gpt2(model, folder);
      pretrained = model.parameters().front().tensor.to_double_vector();
    } else {
      models::DistilBertConfig c = models::distilbert_config("tiny");
      c.n_layers = 1;
      const models::DistilBert model(c, gen);
      models::export_hf_distilbert(model, folder);
      pretrained = model.parameters().front().tensor.to_double_vector();
    }
    const FirstStep without = first_step(pretrained_recipe(arch, folder, 0.0));
    const FirstStep with = first_step(pretrained_recipe(arch, folder, 0.5));
    CHECK(without.first_parameter == pretrained);
    CHECK(with.first_parameter == pretrained);
    CHECK(std::isfinite(without.loss));
    CHECK(with.loss != without.loss);
  }
}

}  // namespace
}  // namespace ft::train
