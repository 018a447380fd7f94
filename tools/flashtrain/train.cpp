// `flashtrain train`: trains a model and shows its progress. Until recipes and real data land
// (the GPT-2 trainer issue), it trains a one-block GPT-2 on the synthetic copy task on the CPU.
#include <cstdio>

#include "framework/device.h"
#include "framework/train/copy_task_run.h"
#include "tools/flashtrain/commands.h"

namespace ft::tools {

void add_train_command(CLI::App& app) {
  auto options = std::make_shared<train::CopyTaskOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model (for now: a one-block GPT-2 on the synthetic copy task)");
  cmd->add_option("--steps", options->steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", options->batch, "Rows per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", options->lr, "Peak learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", options->seed, "Seed of initialisation and data")->capture_default_str();
  cmd->add_option("--metrics", options->metrics_path, "Write one JSON line per step to this file");
  cmd->callback([options] {
    std::printf("flashtrain train: one-block GPT-2 on the synthetic copy task, on the cpu%s\n",
                cuda_available() ? " (GPU kernels arrive with the CUDA backend)" : "");
    train::CopyTaskResult r = train::train_copy_task(*options);
    std::printf("parameters %lld | first loss %.4f | last loss %.4f | %.0f tokens/s\n",
                static_cast<long long>(r.parameter_count), r.losses.front(), r.losses.back(), r.tokens_per_second);
  });
}

}  // namespace ft::tools
