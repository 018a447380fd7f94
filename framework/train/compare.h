// A comparison (`flashtrain compare`): one recipe trained in each combination of the values
// that --vary lists (math vs flash attention, fp16 vs bf16), every run from the recipe's seed,
// so all start from the same weights and read the same batches; then a summary table
// (summary.md, summary.csv) and a plot of the losses and of each run's difference from the
// first (loss.png). Every variant's recipe, device and output folder is checked before the
// first run starts, so a bad --vary key or value costs no training.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/train/recipe.h"

namespace ft::train {

struct CompareOptions {
  std::string recipe_path;
  std::vector<std::string> vary;       // "key=value1,value2", as given to --vary
  std::vector<std::string> overrides;  // --set key=value, for every variant
  int64_t steps = 0;                   // > 0: optim.steps for every variant (optim.epochs 0)
  std::string out_dir;                 // empty: runs/compare-<recipe name>
};

struct Variant {
  std::string name;  // "attention=flash,precision=bf16": the varied keys' values in --vary order
  Recipe recipe;     // its run_dir a folder of the comparison's, its data.cache shared with the others
};

struct ComparisonPlan {
  std::string dir;    // --out, or runs/compare-<recipe name>
  std::string title;  // "<recipe name>: attention, precision"
  std::vector<Variant> variants;
};

// The cartesian product of the --vary lists (the last key varying fastest), each variant's
// recipe parsed and checked, with its device and (absent) earlier checkpoints. A key that is not
// in the schema, a value the key does not accept or a variant that cannot run here is an
// ft::Error naming the key; nothing is written.
ComparisonPlan plan_comparison(const CompareOptions& options);

// One row of the summary table, from a run's metrics.jsonl. The differences are |this run's
// loss - the first run's| over the steps both logged (validation: the steps both evaluated);
// NaN where there are none.
struct VariantSummary {
  std::string name;
  double final_train_loss = 0, final_val_loss = 0;
  double max_train_diff = 0, mean_train_diff = 0, max_val_diff = 0, mean_val_diff = 0;
  double tokens_per_second = 0;    // the last logged tokens_per_s: the mean over the run
  double peak_memory_bytes = 0;    // the largest logged peak_memory_bytes
  int64_t skipped_fp16_steps = 0;  // the last logged skipped_steps (fp16 only; 0 otherwise)
};

// The rows of runs whose folders hold metrics.jsonl, the first the reference.
std::vector<VariantSummary> summarize_runs(const std::vector<std::string>& names,
                                           const std::vector<std::string>& run_dirs);

// The table as Markdown (rounded, for reading) and as CSV (every number round-trips exactly).
std::string summary_markdown(const std::vector<VariantSummary>& rows);
std::string summary_csv(const std::vector<VariantSummary>& rows);

struct ComparisonResult {
  std::string dir;
  std::vector<VariantSummary> rows;
  bool plotted = false;  // loss.png drawn (false: no gnuplot, only its loss.dat and loss.gp)
};

// Runs every variant of plan_comparison in its folder, then writes summary.md, summary.csv and
// loss.png (with loss.dat and loss.gp; without gnuplot only those two) in the comparison's folder.
ComparisonResult run_comparison(const CompareOptions& options);

}  // namespace ft::train
