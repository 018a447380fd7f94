// `flashtrain compare RECIPE --vary key=a,b [--vary key=c,d] [--steps N] [--set k=v] [--out DIR]`:
// trains the recipe once per combination of the varied values, from the same seed, then prints
// the summary table and writes it (summary.md, summary.csv) beside the plot (loss.png).
#include "framework/train/compare.h"

#include <cstdio>

#include "tools/flashtrain/commands.h"

namespace ft::tools {

void add_compare_command(CLI::App& app) {
  auto options = std::make_shared<train::CompareOptions>();
  CLI::App* cmd = app.add_subcommand("compare", "Train a recipe in several variants and compare their losses");
  cmd->add_option("recipe", options->recipe_path, "Recipe file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--vary", options->vary, "A key and its values, e.g. --vary attention=math,flash (repeatable)")
      ->required();
  cmd->add_option("--steps", options->steps, "Optimizer steps of every variant (instead of the recipe's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--set", options->overrides, "Override a recipe key in every variant (repeatable)");
  cmd->add_option("--out", options->out_dir, "The comparison's folder (default runs/compare-<recipe name>)");
  cmd->callback([options] {
    const train::ComparisonResult result = train::run_comparison(*options);
    std::printf("\n%s\nwrote %s/summary.md, summary.csv, %s\n", train::summary_markdown(result.rows).c_str(),
                result.dir.c_str(), result.plotted ? "loss.png" : "loss.dat and loss.gp (no gnuplot: no loss.png)");
  });
}

}  // namespace ft::tools
