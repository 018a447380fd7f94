// The trainer on the GPU, against itself on the CPU: the same recipe and seed (same initial
// weights, data order and dropout masks, which are counter-based and device-independent)
// trained 200 steps must give the same loss at every step, within 1e-3 in fp32 (TF32 off) and
// within 2e-2 in bf16. And fp16's dynamic loss scaling must survive an overflow: an inf planted
// in a gradient skips that step (the weights stay), halves the scale, and training goes on.
// And a run stopped after a checkpoint resumes on the GPU exactly where it left off.
//
// Needs $FLASHTRAIN_DATA with gpt2-tokenizer/ and wikitext-2-raw/wiki.valid.raw (the corpus).
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "tests/gpu/train_test_support.h"
#include "tests/support/temp_dir.h"

namespace ft::train {
namespace {

using testing::corpus_path;
using testing::max_difference;
using testing::train_metrics;

// A two-block GPT-2 (n_embd 64) on 8 x 64 tokens per step, dropout on, metrics every step.
Recipe tiny_recipe(const std::string& run_dir, const std::string& device, const std::string& precision, int64_t steps,
                   int64_t checkpoint_every = 0) {
  const std::string yaml = str(
      "name: parity\nrun_dir: ", run_dir, "\ndevice: ", device, "\nprecision: ", precision, "\ntf32: false\nseed: 5\n",
      "model: {n_layer: 2, n_head: 2, n_embd: 64, block_size: 64, dropout: 0.1}\n", "data: {source: ", corpus_path(),
      ", format: text, val_fraction: 0.05, seq_len: 64}\n", "optim: {batch_size: 8, steps: ", steps,
      ", warmup_steps: 10, lr: 1.0e-3}\n", "checkpoint: {every: ", checkpoint_every, ", keep: 2}\n",
      "logging: {every: 1, val_every: 0, val_batches: 2, sample_every: 0}\n");
  return parse_recipe(yaml, "parity.yaml");
}

TEST_CASE("200 training steps give the same losses on the GPU as on the CPU") {
  const testing::TempDir dir;
  const std::vector<MetricsRow> cpu = train_metrics(tiny_recipe(dir.path() + "/cpu", "cpu", "fp32", 200));
  REQUIRE(cpu.size() == 200);
  CHECK(cpu.back().values.at("loss") < cpu.front().values.at("loss") - 1.0);  // it learns

  const double fp32 = max_difference(cpu, train_metrics(tiny_recipe(dir.path() + "/fp32", "cuda", "fp32", 200)));
  MESSAGE("fp32: largest loss difference from the CPU over 200 steps: ", fp32);
  CHECK(fp32 <= 1e-3);

  const double bf16 = max_difference(cpu, train_metrics(tiny_recipe(dir.path() + "/bf16", "cuda", "bf16", 200)));
  MESSAGE("bf16: largest loss difference from the CPU over 200 steps: ", bf16);
  CHECK(bf16 <= 2e-2);
}

TEST_CASE("fp16 training skips a step whose gradients overflow, halves the loss scale and goes on") {
  const testing::TempDir dir;
  constexpr int64_t kOverflowStep = 10, kSteps = 30;
  int64_t step = 0;
  std::vector<double> before_overflow, after_overflow;
  TrainHooks hooks;
  // Called once per step after the backward pass, with the fp16 parameters whose (scaled)
  // gradients the step reads: plant an inf at kOverflowStep, and look at the weights around it.
  hooks.reduce_gradients = [&](const std::vector<Tensor>& params) {
    ++step;
    if (step == kOverflowStep) {
      before_overflow = params[0].to_double_vector();
      params[0].grad().fill_(INFINITY);
    }
    if (step == kOverflowStep + 1) after_overflow = params[0].to_double_vector();
    if (step == kOverflowStep + 2) CHECK(params[0].to_double_vector() != after_overflow);  // updates resumed
  };
  const std::vector<MetricsRow> rows = train_metrics(tiny_recipe(dir.path(), "cuda", "fp16", kSteps), hooks);
  REQUIRE(rows.size() == kSteps);
  CHECK(after_overflow == before_overflow);  // the overflowed step changed no weight

  const double initial_scale = rows[0].values.at("loss_scale");
  for (const MetricsRow& row : rows) {
    CAPTURE(row.step);
    const bool after = row.step >= kOverflowStep;
    CHECK(row.values.at("skipped_steps") == (after ? 1 : 0));
    CHECK(row.values.at("loss_scale") == (after ? initial_scale / 2 : initial_scale));
    CHECK(std::isfinite(row.values.at("loss")));
  }
  CHECK(rows.back().values.at("loss") < rows.front().values.at("loss") - 0.5);  // still learning
}

TEST_CASE("a GPU run stopped after a checkpoint and resumed repeats the uninterrupted run bit for bit") {
  constexpr int64_t kSteps = 40, kEvery = 20;
  for (const char* precision : {"bf16", "fp16"}) {
    CAPTURE(precision);
    const testing::TempDir dir;
    const std::vector<MetricsRow> straight =
        train_metrics(tiny_recipe(dir.path() + "/straight", "cuda", precision, kSteps, kEvery));
    REQUIRE(straight.size() == kSteps);

    // The second run dies (an exception out of the hook) in the step after its step-20 checkpoint.
    const Recipe recipe = tiny_recipe(dir.path() + "/stopped", "cuda", precision, kSteps, kEvery);
    int64_t step = 0;
    TrainHooks crash;
    crash.reduce_gradients = [&](const std::vector<Tensor>&) {
      if (++step == kEvery + 1) throw std::runtime_error("stopped");
    };
    CHECK_THROWS_AS(run_training(recipe, crash), std::runtime_error);
    Recipe resume = recipe;
    resume.resume = "auto";
    const std::vector<MetricsRow> resumed = train_metrics(resume);
    REQUIRE(resumed.size() == kSteps);
    for (int64_t i = 0; i < kSteps; ++i) {
      CAPTURE(resumed[i].step);
      CHECK(resumed[i].values.at("loss") == straight[i].values.at("loss"));
      CHECK(resumed[i].values.at("grad_norm") == straight[i].values.at("grad_norm"));
    }
  }
}

}  // namespace
}  // namespace ft::train
