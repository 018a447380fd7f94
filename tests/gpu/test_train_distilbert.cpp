// DistilBERT on the GPU. Through the trainer, against itself on the CPU: the same recipe and seed
// (same initial weights, batches, masks and dropout, all counter-based) trained 100 masked-LM
// steps on padded rows gives the same loss at every step, within 1e-3 in fp32 (TF32 off) and
// 2e-2 in bf16, as GPT-2's parity test holds it (test_train.cpp). The model alone: a padded batch
// gives the loss and logits of its sequences run one at a time, with the math kernel and with
// flash. And the flash kernel trains as math does in bf16, on packed and on padded rows, and a
// comparison of the two kernels is planned for a DistilBERT recipe.
//
// Needs $FLASHTRAIN_DATA with bert-base-uncased/ and wikitext-2-raw/wiki.valid.raw (the corpus).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "data/loader.h"
#include "framework/train/compare.h"
#include "framework/train/run_setup.h"
#include "models/distilbert/distilbert.h"
#include "tests/gpu/op_test_support.h"
#include "tests/gpu/train_test_support.h"
#include "tests/support/temp_dir.h"

namespace ft::train {
namespace {

using testing::kGpu;
using testing::max_difference;
using testing::train_metrics;

// The bounds on the per-step loss difference, GPT-2's in gpu_test_train: fp32 against the CPU,
// and any bf16 run against the CPU or against another bf16 run.
constexpr double kFp32LossBound = 1e-3;
constexpr double kBf16LossBound = 2e-2;

struct RunOptions {
  std::string device = "cuda";
  std::string precision = "bf16";
  std::string attention = "math";
  std::string packing = "padded";
  int64_t steps = 100;
};

// A two-block DistilBERT, width 128 in two heads of 64 (a size the flash kernel takes), trained
// with BERT's masking on 8 rows of 64 tokens a step, dropout on, metrics every step, validation
// at the end; one prepared dataset in `dir` for every run.
Recipe tiny_distilbert(const testing::TempDir& dir, const std::string& name, const RunOptions& o) {
  const std::string yaml = str(
      "name: ", name, "\nrun_dir: ", dir.path(), "/", name, "\ndevice: ", o.device, "\nprecision: ", o.precision,
      "\nattention: ", o.attention, "\ntf32: false\nseed: 7\n",
      "model: {arch: distilbert, size: tiny, n_layer: 2, n_head: 2, n_embd: 128, block_size: 64, dropout: 0.1}\n",
      "data: {source: ", testing::corpus_path(), ", format: text, tokenizer: bert, val_fraction: 0.05, seq_len: 64, ",
      "packing: ", o.packing, ", mlm_probability: 0.15, cache: ", dir.path(), "/dataset.h5}\n",
      "optim: {batch_size: 8, steps: ", o.steps, ", warmup_steps: 10, lr: 2.0e-3}\n",
      "checkpoint: {every: 0, keep: 1}\n", "logging: {every: 1, val_every: 0, val_batches: 8, sample_every: 0}\n");
  return parse_recipe(yaml, name + ".yaml");
}

// The last row's validation metrics exist and are sane.
void check_validation(const std::vector<MetricsRow>& rows) {
  REQUIRE_FALSE(rows.empty());
  const std::map<std::string, double>& last = rows.back().values;
  REQUIRE(last.count("val_loss"));
  REQUIRE(last.count("val_masked_accuracy"));
  CHECK(std::isfinite(last.at("val_loss")));
  CHECK(last.at("val_masked_accuracy") > 0.0);
  CHECK(last.at("val_masked_accuracy") <= 1.0);
}

TEST_CASE("distilbert: 100 masked-LM steps on padded rows give the same losses on the GPU as on the CPU") {
  const testing::TempDir dir;
  RunOptions cpu_run;
  cpu_run.device = "cpu";
  cpu_run.precision = "fp32";
  const std::vector<MetricsRow> cpu = train_metrics(tiny_distilbert(dir, "cpu", cpu_run));
  REQUIRE(cpu.size() == 100);
  CHECK(cpu.back().values.at("loss") < cpu.front().values.at("loss") - 1.0);  // it learns, from ~ln(30522)
  check_validation(cpu);

  RunOptions fp32_run;
  fp32_run.precision = "fp32";
  const std::vector<MetricsRow> fp32 = train_metrics(tiny_distilbert(dir, "fp32", fp32_run));
  const double fp32_loss = max_difference(cpu, fp32), fp32_val = max_difference(cpu, fp32, "val_loss");
  MESSAGE("fp32: largest loss difference from the CPU over 100 steps: ", fp32_loss, " (validation: ", fp32_val, ")");
  CHECK(fp32_loss <= kFp32LossBound);
  CHECK(fp32_val <= kFp32LossBound);
  check_validation(fp32);

  const std::vector<MetricsRow> bf16 = train_metrics(tiny_distilbert(dir, "bf16", RunOptions{}));
  const double bf16_loss = max_difference(cpu, bf16), bf16_val = max_difference(cpu, bf16, "val_loss");
  MESSAGE("bf16: largest loss difference from the CPU over 100 steps: ", bf16_loss, " (validation: ", bf16_val, ")");
  CHECK(bf16_loss <= kBf16LossBound);
  CHECK(bf16_val <= kBf16LossBound);
  check_validation(bf16);
}

TEST_CASE("distilbert: flash attention trains as math does in bf16, on packed and on padded rows") {
  const testing::TempDir dir;
  for (const char* packing : {"packed", "padded"}) {
    CAPTURE(packing);
    RunOptions o;
    o.packing = packing;
    o.steps = 50;
    const std::vector<MetricsRow> math = train_metrics(tiny_distilbert(dir, str("math-", packing), o));
    o.attention = "flash";
    const std::vector<MetricsRow> flash = train_metrics(tiny_distilbert(dir, str("flash-", packing), o));
    REQUIRE(flash.size() == 50);
    const double loss = max_difference(math, flash), val = max_difference(math, flash, "val_loss");
    MESSAGE(packing, ": flash against math, largest loss difference over 50 bf16 steps: ", loss, " (validation: ", val,
            ")");
    CHECK(loss <= kBf16LossBound);
    CHECK(val <= kBf16LossBound);
    check_validation(flash);
  }
}

// ---- The model alone: padded rows against their sequences run one at a time -----------------

// Three sequences of different lengths, their ids random in [1, vocab) and every third position
// labelled with a random id; the padded batch holds them in rows of the longest, its padding
// given random ids too (segment id -1 must hide them, whatever they hold).
struct PaddedCase {
  std::vector<std::vector<int32_t>> ids, labels;
  models::DistilBertBatch padded;
  Tensor padded_labels;
};

PaddedCase padded_case(int64_t vocab, uint64_t seed) {
  const std::vector<int64_t> lengths = {48, 31, 9};
  const int64_t t = 48;
  Generator gen(seed);
  const std::vector<double> uniforms = rand({1000}, gen, DType::f64).to_double_vector();
  size_t next = 0;
  auto random_id = [&] { return static_cast<int32_t>(1 + uniforms.at(next++) * static_cast<double>(vocab - 1)); };
  PaddedCase c;
  std::vector<int32_t> ids, segments, labels;
  for (int64_t length : lengths) {
    std::vector<int32_t> row_ids, row_labels;
    for (int64_t i = 0; i < length; ++i) {
      row_ids.push_back(random_id());
      row_labels.push_back(i % 3 == 1 ? random_id() : data::kIgnoreTarget);
    }
    c.ids.push_back(row_ids);
    c.labels.push_back(row_labels);
    for (int64_t i = 0; i < t; ++i) {
      const bool real = i < length;
      ids.push_back(real ? row_ids[i] : random_id());
      segments.push_back(real ? 0 : -1);
      labels.push_back(real ? row_labels[i] : data::kIgnoreTarget);
    }
  }
  const int64_t rows = static_cast<int64_t>(lengths.size());
  c.padded = {Tensor::from_ints(ids, {rows, t}).to(kGpu), Tensor(), Tensor::from_ints(segments, {rows, t}).to(kGpu)};
  c.padded_labels = Tensor::from_ints(labels, {rows, t}).to(kGpu);
  return c;
}

// The tiny size made 128 wide in two heads of 64 (a size flash takes), without dropout; its
// matrices drawn with std 0.1 (not 0.02), so attention is far from uniform and a leak into the
// padding would move the logits by far more than the bounds.
models::DistilBert padded_test_model(DType dtype, AttentionKernel kernel) {
  models::DistilBertConfig c = models::distilbert_config("tiny");  // two blocks, BERT's vocabulary
  c.dim = 128;
  c.n_heads = 2;
  c.dropout = 0;
  c.attention = kernel;
  Generator gen(11);
  models::DistilBert model(c, gen, dtype, kGpu);
  for (const NamedParameter& p : model.parameters())
    if (p.tensor.dim() == 2) normal_(p.tensor, gen, 0.0, 0.1);
  return model;
}

TEST_CASE("distilbert on the GPU: padded rows give the logits and loss of their sequences alone (math, flash)") {
  cuda::set_poison_allocations(true);
  testing::AllowTf32 exact(false);
  struct Setting {
    DType dtype;
    AttentionKernel kernel;
  };
  for (const Setting& s : {Setting{DType::f32, AttentionKernel::math}, Setting{DType::bf16, AttentionKernel::math},
                           Setting{DType::bf16, AttentionKernel::flash}, Setting{DType::f16, AttentionKernel::flash}}) {
    CAPTURE(dtype_name(s.dtype));
    CAPTURE(s.kernel == AttentionKernel::flash ? "flash" : "math");
    NoGradGuard no_grad;
    const models::DistilBert model = padded_test_model(s.dtype, s.kernel);
    const PaddedCase c = padded_case(model.config().vocab_size, 21);
    const double bound = testing::tolerance(s.dtype);
    const Tensor logits = model.mlm_logits(c.padded);
    double weighted_loss = 0, labelled = 0;
    for (size_t row = 0; row < c.ids.size(); ++row) {
      CAPTURE(row);
      const int64_t length = static_cast<int64_t>(c.ids[row].size()), r = static_cast<int64_t>(row);
      const models::DistilBertBatch alone{Tensor::from_ints(c.ids[row], {1, length}).to(kGpu)};
      const Tensor rows = slice(slice(logits, 0, r, r + 1), 1, 0, length).contiguous();
      CHECK(testing::gpu_error(rows, model.mlm_logits(alone)) <= bound);
      const Tensor labels = Tensor::from_ints(c.labels[row], {1, length}).to(kGpu);
      double n = 0;
      for (int32_t label : c.labels[row]) n += label != data::kIgnoreTarget;
      weighted_loss += n * model.mlm_loss(alone, labels).item();
      labelled += n;
    }
    const double expected = weighted_loss / labelled, loss = model.mlm_loss(c.padded, c.padded_labels).item();
    CHECK(std::isfinite(loss));
    CHECK(std::abs(loss - expected) <= bound * std::abs(expected));

    // The control: without the segment ids the short row's tokens attend to its padding, and
    // its logits move far outside the bound.
    const models::DistilBertBatch unmasked{c.padded.ids};
    const int64_t short_row = 2, short_length = static_cast<int64_t>(c.ids[2].size());
    const Tensor leaky =
        slice(slice(model.mlm_logits(unmasked), 0, short_row, short_row + 1), 1, 0, short_length).contiguous();
    const Tensor masked = slice(slice(logits, 0, short_row, short_row + 1), 1, 0, short_length).contiguous();
    CHECK(testing::gpu_error(leaky, masked) > 0.1);
  }
}

// ---- flashtrain compare: flash against math for DistilBERT ---------------------------------

TEST_CASE("compare: --vary attention=math,flash is planned for a DistilBERT recipe in bf16 on the GPU") {
  const testing::TempDir dir;
  const std::string recipe = dir.path() + "/distilbert.yaml";
  std::ofstream(recipe) << "name: distilbert\ndevice: cuda\nprecision: bf16\nattention: flash\n"
                        << "model: {arch: distilbert, size: distilbert-base}\n"
                        << "data: {tokenizer: bert, packing: padded, seq_len: 128}\n";
  CompareOptions o;
  o.recipe_path = recipe;
  o.vary = {"attention=math,flash"};
  o.out_dir = dir.path() + "/compare";
  const ComparisonPlan plan = plan_comparison(o);
  REQUIRE(plan.variants.size() == 2);
  CHECK(plan.variants[0].name == "attention=math");
  CHECK(plan.variants[1].name == "attention=flash");
  CHECK(distilbert_model_config(plan.variants[0].recipe, 30522).attention == AttentionKernel::math);
  CHECK(distilbert_model_config(plan.variants[1].recipe, 30522).attention == AttentionKernel::flash);
  CHECK_FALSE(std::filesystem::exists(o.out_dir));
}

}  // namespace
}  // namespace ft::train
