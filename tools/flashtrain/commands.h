// The subcommands, one file each. Each adds itself to the app with a callback that runs it.
#pragma once

#include <CLI/CLI.hpp>

namespace ft::tools {

void add_info_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_plot_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_prepare_command(CLI::App& app);
void add_convert_command(CLI::App& app);

}  // namespace ft::tools
