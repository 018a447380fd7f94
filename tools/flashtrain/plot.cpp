// `flashtrain plot RUN_DIR... [--out FILE.png]`: the training and validation losses of existing
// runs (their metrics.jsonl) on shared axes, drawn by gnuplot (framework/train/plot.h).
#include "framework/train/plot.h"

#include <cstdio>

#include "tools/flashtrain/commands.h"

namespace ft::tools {
namespace {

struct PlotArgs {
  std::vector<std::string> run_dirs;
  std::string out = "loss.png";
};

}  // namespace

void add_plot_command(CLI::App& app) {
  auto args = std::make_shared<PlotArgs>();
  CLI::App* cmd = app.add_subcommand("plot", "Plot the losses of existing runs on shared axes");
  cmd->add_option("runs", args->run_dirs, "Run folders (each holds metrics.jsonl)")->required();
  cmd->add_option("--out", args->out, "The PNG to write; its .dat and .gp go beside it")->capture_default_str();
  cmd->callback([args] {
    train::plot_runs(args->run_dirs, args->out);
    std::printf("wrote %s\n", args->out.c_str());
  });
}

}  // namespace ft::tools
