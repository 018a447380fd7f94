// `flashtrain train [RECIPE] [--set key=value ...] [--resume]`: runs a training recipe
// (recipes/*.yaml; without one, the built-in tiny CPU defaults of framework/train/recipe.h).
#include <cstdio>

#include "framework/train/recipe.h"
#include "framework/train/trainer.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {
namespace {

struct TrainArgs {
  std::string recipe;
  std::vector<std::string> overrides;
  bool resume = false;
};

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a YAML recipe (docs/recipes.md)");
  cmd->add_option("recipe", args->recipe, "Recipe file; without one, the tiny CPU defaults")->check(CLI::ExistingFile);
  cmd->add_option("--set", args->overrides, "Override a recipe key, e.g. --set optim.lr=1e-4 (repeatable)");
  cmd->add_flag("--resume", args->resume, "Continue from the newest valid checkpoint (as resume: auto)");
  cmd->callback([args] {
    std::vector<std::string> overrides = args->overrides;
    if (args->resume) overrides.push_back("resume=auto");
    const train::Recipe recipe = args->recipe.empty() ? train::parse_recipe("{}", "(defaults)", overrides)
                                                      : train::load_recipe(args->recipe, overrides);
    const train::TrainSummary s = train::run_training(recipe);
    std::printf("done: steps %lld-%lld | last loss %.4f | validation loss %.4f | %.0f tokens/s | %s\n",
                static_cast<long long>(s.first_step), static_cast<long long>(s.last_step), s.last_loss, s.last_val_loss,
                s.tokens_per_second, s.run_dir.c_str());
  });
}

}  // namespace ft::tools
