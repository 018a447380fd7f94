// framework/train/compare: the variants are the cartesian product of the --vary lists in
// command-line order; a key the schema lacks, a value it refuses or a variant that cannot run
// here fails naming the key before anything is written (flash for DistilBERT as for GPT-2); a
// tiny comparison's runs start from the same weights and batches, its summary's numbers equal
// those recomputed here from the runs' metrics files, and its plot decodes; run again into its
// folder, it stops before training. A run without gnuplot trains and skips its plot; a
// comparison without it leaves the plot's data and script.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/error.h"
#include "framework/train/compare.h"
#include "framework/train/plot.h"
#include "framework/train/trainer.h"
#include "tests/support/png_image.h"
#include "tests/support/scoped_env.h"
#include "tests/support/small_corpus.h"
#include "tests/support/temp_dir.h"

using namespace ft;
using namespace ft::train;
namespace fs = std::filesystem;

namespace {

// A summary.csv row: the quoted variant, then the numbers in the header's order.
struct CsvRow {
  std::string variant;
  std::map<std::string, double> values;
};

std::vector<CsvRow> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::string header_line;
  std::getline(in, header_line);
  std::vector<std::string> header;
  std::istringstream header_fields(header_line);
  for (std::string f; std::getline(header_fields, f, ',');) header.push_back(f);
  std::vector<CsvRow> rows;
  for (std::string line; std::getline(in, line);) {
    REQUIRE(line[0] == '"');
    const size_t close = line.find('"', 1);
    CsvRow row{line.substr(1, close - 1), {}};
    std::istringstream fields(line.substr(close + 2));
    for (size_t i = 1; i < header.size(); ++i) {
      std::string f;
      std::getline(fields, f, ',');
      row.values[header[i]] = std::strtod(f.c_str(), nullptr);
    }
    rows.push_back(row);
  }
  return rows;
}

// What summary.csv must say of a run, recomputed from the metrics files with a JSON parser.
struct Expected {
  std::map<int64_t, double> loss, val_loss;
  double tokens_per_s = NAN, peak_memory = 0;
};

Expected expected_from(const std::string& run_dir) {
  Expected e;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    const int64_t step = j["step"];
    e.loss[step] = j["loss"];
    if (j.contains("val_loss")) e.val_loss[step] = j["val_loss"];
    e.tokens_per_s = j["tokens_per_s"];
    e.peak_memory = std::max(e.peak_memory, j["peak_memory_bytes"].get<double>());
  }
  return e;
}

// max and mean |a - b| over the steps of `a` that `b` has.
std::pair<double, double> abs_difference(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b) {
  double max = 0, sum = 0;
  int count = 0;
  for (const auto& [step, value] : a)
    if (b.count(step)) max = std::max(max, std::abs(value - b.at(step))), sum += std::abs(value - b.at(step)), ++count;
  REQUIRE(count > 0);
  return {max, sum / count};
}

CompareOptions options_for(const testing::TempDir& dir, std::vector<std::string> vary) {
  CompareOptions o;
  o.recipe_path = testing::tiny_recipe(dir);
  o.vary = std::move(vary);
  o.out_dir = dir.path() + "/compare";
  return o;
}

}  // namespace

TEST_CASE("plan_comparison: the cartesian product in --vary order, with --set and --steps in every variant") {
  testing::TempDir dir;
  CompareOptions o = options_for(dir, {"optim.lr=1e-3,3e-3", "model.dropout=0,0.1"});
  o.overrides = {"optim.warmup_steps=2"};
  o.steps = 5;
  const ComparisonPlan plan = plan_comparison(o);
  CHECK(plan.dir == o.out_dir);
  CHECK(plan.title == "tiny: optim.lr, model.dropout");
  REQUIRE(plan.variants.size() == 4);
  const std::vector<std::string> names = {"optim.lr=1e-3,model.dropout=0", "optim.lr=1e-3,model.dropout=0.1",
                                          "optim.lr=3e-3,model.dropout=0", "optim.lr=3e-3,model.dropout=0.1"};
  for (size_t i = 0; i < 4; ++i) {
    const Recipe& r = plan.variants[i].recipe;
    CHECK(plan.variants[i].name == names[i]);
    CHECK(r.optim.lr == (i < 2 ? 1e-3 : 3e-3));
    CHECK(r.model.dropout == (i % 2 == 0 ? 0.0 : 0.1));
    CHECK(r.optim.steps == 5);
    CHECK(r.optim.warmup_steps == 2);
    CHECK(r.seed == 5);
    CHECK(r.run_dir == o.out_dir + "/" + names[i]);
    CHECK(r.data.cache == o.out_dir + "/dataset.h5");  // one prepared dataset for all
  }
  CHECK_FALSE(fs::exists(o.out_dir));
}

TEST_CASE("run_comparison: a bad --vary fails naming the key before any run folder exists") {
  testing::TempDir dir;
  struct Mistake {
    std::vector<std::string> vary;
    std::string expected;
  };
  const std::vector<Mistake> mistakes = {
      {{"attentoin=math,flash"}, "--vary attentoin=math,flash: unknown key attentoin (did you mean attention?)"},
      {{"attention=math,fast"}, "attention: expected one of auto, math, flash, cudnn, got 'fast'"},
      {{"optim.lr=1e-3,-1"}, "optim.lr: expected a number > 0, got '-1'"},
      {{"optim.lr=1e-3,"}, "optim.lr: an empty value in the list"},
      {{"optim.lr"}, "--vary optim.lr: expected key.path=value1,value2"},
      {{"run_dir=a,b"}, "run_dir cannot vary"},
      {{"optim.lr=1e-3", "optim.lr=2e-3"}, "optim.lr is varied twice"},
      {{"precision=fp32,fp16"}, "variant precision=fp16: "},  // the tiny recipe is device: cpu
      {{"precision=fp32,fp16"}, "precision: fp16 needs a GPU"},
      {{"attention=math,flash"},
       "variant attention=flash: --set attention=flash: attention: the flash attention kernel needs a head size of 64 "
       "or 128, got model.n_embd / model.n_head = 32 / 2 = 16"},
  };
  for (const Mistake& m : mistakes) {
    const CompareOptions o = options_for(dir, m.vary);
    INFO(m.expected);
    CHECK_THROWS_WITH_AS(run_comparison(o), doctest::Contains(m.expected.c_str()), Error);
    CHECK_FALSE(fs::exists(o.out_dir));
  }
}

TEST_CASE("plan_comparison: DistilBERT's recipes vary the attention kernel, refused only where flash cannot run") {
  testing::TempDir dir;
  const fs::path recipes = fs::path(FLASHTRAIN_SOURCE_DIR) / "recipes";
  CompareOptions o;
  o.recipe_path = (recipes / "distilbert-wikitext2.yaml").string();
  o.vary = {"attention=math,flash"};
  o.out_dir = dir.path() + "/compare";
  // On the CPU in fp32 the flash variant meets the device check every architecture shares.
  o.overrides = {"device=cpu", "precision=fp32"};
  const std::string refusal =
      "variant attention=flash: " + o.recipe_path + ": attention: flash needs a GPU and precision bf16 or fp16";
  CHECK_THROWS_WITH_AS(plan_comparison(o), doctest::Contains(refusal.c_str()), Error);
  o.vary = {"attention=math"};
  const ComparisonPlan plan = plan_comparison(o);
  REQUIRE(plan.variants.size() == 1);
  CHECK(plan.variants[0].recipe.model.arch == "distilbert");
  CHECK(plan.variants[0].recipe.attention == "math");
  // The tiny recipe's heads of 16 are refused before any run, naming the kernel's sizes.
  o.recipe_path = (recipes / "tiny-distilbert-cpu.yaml").string();
  o.vary = {"attention=math,flash"};
  o.overrides = {};
  CHECK_THROWS_WITH_AS(plan_comparison(o),
                       doctest::Contains("variant attention=flash: --set attention=flash: attention: the flash "
                                         "attention kernel needs a head size of 64 or 128, got model.n_embd / "
                                         "model.n_head = 64 / 4 = 16"),
                       Error);
  CHECK_FALSE(fs::exists(o.out_dir));
}

TEST_CASE("run_comparison: the summary equals the runs' metrics, the runs share their start, the plot decodes") {
  testing::TempDir dir;
  const CompareOptions o = options_for(dir, {"optim.lr=2e-3,4e-3"});
  const ComparisonResult result = run_comparison(o);
  CHECK(result.plotted);
  const std::vector<std::string> names = {"optim.lr=2e-3", "optim.lr=4e-3"};
  const std::vector<Expected> runs = {expected_from(o.out_dir + "/" + names[0]),
                                      expected_from(o.out_dir + "/" + names[1])};
  REQUIRE(runs[0].loss.size() == 8);
  REQUIRE(runs[0].val_loss.size() == 2);  // steps 4 and 8
  // The same initial weights and first batch: step 1's loss comes before any update.
  CHECK(runs[0].loss.at(1) == runs[1].loss.at(1));
  CHECK(runs[0].loss.at(8) != runs[1].loss.at(8));

  const std::vector<CsvRow> csv = read_csv(o.out_dir + "/summary.csv");
  REQUIRE(csv.size() == 2);
  REQUIRE(result.rows.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const Expected& e = runs[i];
    const auto [max_train, mean_train] = abs_difference(e.loss, runs[0].loss);
    const auto [max_val, mean_val] = abs_difference(e.val_loss, runs[0].val_loss);
    const std::map<std::string, double> expected = {{"final_train_loss", e.loss.rbegin()->second},
                                                    {"final_val_loss", e.val_loss.rbegin()->second},
                                                    {"max_abs_train_diff", max_train},
                                                    {"mean_abs_train_diff", mean_train},
                                                    {"max_abs_val_diff", max_val},
                                                    {"mean_abs_val_diff", mean_val},
                                                    {"tokens_per_s", e.tokens_per_s},
                                                    {"peak_memory_bytes", e.peak_memory},
                                                    {"skipped_fp16_steps", 0}};
    CHECK(csv[i].variant == names[i]);
    CHECK(result.rows[i].name == names[i]);
    for (const auto& [column, value] : expected) {
      INFO(names[i], " ", column);
      CHECK(csv[i].values.at(column) == doctest::Approx(value).epsilon(1e-12));
    }
    CHECK(result.rows[i].final_val_loss == csv[i].values.at("final_val_loss"));
  }
  CHECK(csv[0].values.at("max_abs_train_diff") == 0);
  CHECK(csv[1].values.at("max_abs_train_diff") > 0);
  CHECK(runs[0].peak_memory > 0);

  std::ifstream markdown(o.out_dir + "/summary.md");
  const std::string table((std::istreambuf_iterator<char>(markdown)), {});
  char final_loss[32];
  std::snprintf(final_loss, sizeof final_loss, "| %.4f |", runs[1].loss.rbegin()->second);
  CHECK(table.find("| optim.lr=4e-3 " + std::string(final_loss)) != std::string::npos);

  const testing::PngImage image = testing::read_png(o.out_dir + "/loss.png");
  REQUIRE(image.decoded);
  CHECK(image.width == 1000);
  CHECK(image.height == 700);
  CHECK(image.distinct_colors() > 2);
  CHECK(fs::exists(o.out_dir + "/loss.gp"));

  // Run again into the same folder, the first variant's checkpoints stop it before any training.
  CHECK_THROWS_WITH_AS(run_comparison(o), doctest::Contains("variant optim.lr=2e-3: "), Error);
  CHECK_THROWS_WITH_AS(run_comparison(o), doctest::Contains("holds checkpoints of an earlier run"), Error);

  // `flashtrain plot` over the finished runs.
  plot_runs({o.out_dir + "/" + names[0], o.out_dir + "/" + names[1]}, dir.path() + "/plot.png");
  CHECK(testing::read_png(dir.path() + "/plot.png").decoded);
}

TEST_CASE("run_training: without gnuplot the run trains and skips its plot") {
  testing::TempDir dir;
  const Recipe recipe = load_recipe(testing::tiny_recipe(dir), {"optim.steps=4", "run_dir=" + dir.path() + "/run"});
  testing::ScopedEnv no_gnuplot("PATH", "/nonexistent");
  const TrainSummary summary = run_training(recipe);
  CHECK(summary.last_step == 4);
  CHECK(std::isfinite(summary.last_val_loss));
  CHECK(fs::exists(dir.path() + "/run/metrics.jsonl"));
  CHECK_FALSE(fs::exists(dir.path() + "/run/loss.png"));
}

TEST_CASE("run_comparison: without gnuplot the variants train and the plot's data and script are left") {
  testing::TempDir dir;
  const CompareOptions o = options_for(dir, {"optim.lr=2e-3,4e-3"});
  testing::ScopedEnv no_gnuplot("PATH", "/nonexistent");
  const ComparisonResult result = run_comparison(o);
  CHECK(result.rows.size() == 2);
  CHECK_FALSE(result.plotted);
  CHECK(fs::exists(o.out_dir + "/summary.md"));
  CHECK(fs::exists(o.out_dir + "/summary.csv"));
  CHECK(fs::exists(o.out_dir + "/loss.dat"));
  CHECK(fs::exists(o.out_dir + "/loss.gp"));
  CHECK_FALSE(fs::exists(o.out_dir + "/loss.png"));
}
