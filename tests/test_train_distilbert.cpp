// DistilBERT through the trainer, with recipes/tiny-distilbert-cpu.yaml cut down to seconds:
// the masked-LM loss falls and validation reports the masked-token accuracy; a run resumed from
// its middle checkpoint repeats the uninterrupted run's losses exactly (the masking generator
// is checkpointed); recipes that do not fit DistilBERT are refused, naming the key.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "framework/error.h"
#include "framework/train/recipe.h"
#include "framework/train/trainer.h"
#include "tests/support/small_corpus.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;
namespace fs = std::filesystem;

namespace {

// The tiny recipe on small_corpus: 40 steps of 4 x 32 tokens, checkpoints at 20 and 40.
Recipe tiny_distilbert(const testing::TempDir& dir, const std::string& run_dir) {
  return load_recipe(
      fs::path(FLASHTRAIN_SOURCE_DIR) / "recipes" / "tiny-distilbert-cpu.yaml",
      {"data.source=" + testing::small_corpus(dir), "data.val_fraction=0.1", "data.seq_len=32",
       "data.cache=" + dir.path() + "/dataset.h5", "run_dir=" + run_dir, "optim.batch_size=4", "optim.steps=40",
       "optim.warmup_steps=4", "optim.lr=5.0e-3", "checkpoint.every=20", "checkpoint.keep=3", "logging.every=1",
       "logging.val_every=20", "logging.val_batches=4", "model.dropout=0.1"});
}

// The value of `key` in every line of a metrics file that has it, as written.
std::vector<std::string> values(const std::string& metrics_path, const std::string& key) {
  std::vector<std::string> out;
  std::ifstream in(metrics_path);
  const std::string quoted = "\"" + key + "\": ";
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find(quoted);
    if (at == std::string::npos) continue;
    const size_t begin = at + quoted.size();
    out.push_back(line.substr(begin, line.find_first_of(",}", begin) - begin));
  }
  return out;
}

std::string error_of(const std::vector<std::string>& overrides) {
  try {
    parse_recipe("model: {arch: distilbert}\ndata: {tokenizer: bert, packing: padded}\n", "x.yaml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("train distilbert: the masked-LM loss falls, validation reports accuracy, resume repeats the run") {
  testing::TempDir dir;
  const std::string straight = dir.path() + "/straight", resumed = dir.path() + "/resumed";
  const TrainSummary summary = run_training(tiny_distilbert(dir, straight));
  REQUIRE(summary.last_step == 40);

  const std::vector<std::string> losses = values(straight + "/metrics.jsonl", "loss");
  REQUIRE(losses.size() == 40);
  CHECK(std::stod(losses.back()) < std::stod(losses.front()) - 1.0);  // from ~ln(30522) = 10.3
  const std::vector<std::string> accuracy = values(straight + "/metrics.jsonl", "val_masked_accuracy");
  REQUIRE(accuracy.size() == 2);
  CHECK(std::stod(accuracy.back()) > 0.0);
  CHECK(std::stod(accuracy.back()) <= 1.0);
  // The baseline: the most frequent masked token's share, a fraction of the masked tokens.
  const std::vector<std::string> unigram = values(straight + "/metrics.jsonl", "val_unigram_accuracy");
  REQUIRE(unigram.size() == 2);
  CHECK(std::stod(unigram.back()) > 0.0);
  CHECK(std::stod(unigram.back()) < 0.5);
  CHECK(values(straight + "/metrics.jsonl", "val_loss").size() == 2);

  // The same run from its step-20 checkpoint, as a run stopped there would continue.
  fs::copy(straight, resumed, fs::copy_options::recursive);
  fs::remove(fs::path(resumed) / "checkpoints" / "step_000040.h5");
  Recipe again = tiny_distilbert(dir, resumed);
  again.resume = "auto";
  CHECK(run_training(again).first_step == 21);
  CHECK(values(resumed + "/metrics.jsonl", "loss") == losses);
  CHECK(values(resumed + "/metrics.jsonl", "val_masked_accuracy") == accuracy);
}

TEST_CASE("recipe: combinations DistilBERT cannot train are refused, naming the key") {
  CHECK(error_of({}) == "(no error)");
  CHECK(error_of({"data.tokenizer=gpt2"}).find("data.tokenizer: model.arch: distilbert needs the bert") !=
        std::string::npos);
  CHECK(error_of({"data.packing=concat"}).find("data.packing: model.arch: distilbert needs packed or padded") !=
        std::string::npos);
  CHECK(error_of({"model.positions=rotary"}).find("model.positions: model.arch: distilbert has learned") !=
        std::string::npos);
  CHECK(error_of({"model.size=gpt2-124m"}).find("model.size: model.arch: distilbert takes the sizes") !=
        std::string::npos);
  CHECK(error_of({"logging.sample_every=10"}).find("logging.sample_every: model.arch: distilbert does not sample") !=
        std::string::npos);
  CHECK(error_of({"data.mlm_probability=0"}).find("data.mlm_probability: expected a number in (0, 1)") !=
        std::string::npos);
  CHECK(error_of({"model.arch=gpt2", "model.size=distilbert-base"})
            .find("model.size: distilbert-base is a size of model.arch: distilbert") != std::string::npos);
}
