// flashtrain: the command line. Subcommands only parse their arguments and call the library;
// every ft::Error is printed as "flashtrain: error: ..." with exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "framework/error.h"
#include "tools/flashtrain/commands.h"

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear in order with the progress line on stderr
  CLI::App app{"flashtrain: a small, fast trainer for GPT-2 and DistilBERT"};
  app.require_subcommand(1);
  app.set_version_flag("--version", FLASHTRAIN_VERSION);
  ft::tools::add_info_command(app);
  ft::tools::add_train_command(app);
  ft::tools::add_compare_command(app);
  ft::tools::add_plot_command(app);
  ft::tools::add_generate_command(app);
  ft::tools::add_bench_command(app);
  ft::tools::add_tokenize_command(app);
  ft::tools::add_prepare_command(app);
  ft::tools::add_convert_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ft::Error& e) {
    std::fprintf(stderr, "flashtrain: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flashtrain: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
