#include "framework/train/plot.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "framework/train/metrics.h"

namespace fs = std::filesystem;

namespace ft::train {

const char* const kInstallGnuplot =
    "install gnuplot (Debian: apt-get install gnuplot-nox, which tools/install_deps.sh does)";

namespace {

constexpr int kWidth = 1000, kHeight = 700;  // pixels: two panels still read well at this size

// One curve of the data file: its gnuplot index block, and how the script draws it.
struct Block {
  std::string label;    // the run's, in the legend
  std::string comment;  // what the block holds, in the data file
  Curve points;
  size_t run = 0;  // its colour: the run's, in both panels
  bool validation = false;
};

// A gnuplot single-quoted string: only the quote itself needs escaping, doubled.
std::string gnuplot_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The runs' non-empty training and validation curves, in run order.
std::vector<Block> loss_blocks(const std::vector<PlottedRun>& runs) {
  std::vector<Block> blocks;
  for (size_t i = 0; i < runs.size(); ++i) {
    blocks.push_back({runs[i].label, runs[i].label + ": training loss", runs[i].curves.train, i, false});
    blocks.push_back({runs[i].label, runs[i].label + ": validation loss", runs[i].curves.validation, i, true});
  }
  return blocks;
}

// Each later run's curves minus the first run's, where both have the step.
std::vector<Block> difference_blocks(const std::vector<PlottedRun>& runs) {
  std::vector<Block> blocks;
  const LossCurves& first = runs.front().curves;
  for (size_t i = 1; i < runs.size(); ++i) {
    const std::string minus = " minus " + runs.front().label + "'s";
    blocks.push_back({runs[i].label, runs[i].label + ": training loss" + minus,
                      difference(runs[i].curves.train, first.train), i, false});
    blocks.push_back({runs[i].label, runs[i].label + ": validation loss" + minus,
                      difference(runs[i].curves.validation, first.validation), i, true});
  }
  return blocks;
}

void drop_empty(std::vector<Block>& blocks) {
  blocks.erase(std::remove_if(blocks.begin(), blocks.end(), [](const Block& b) { return b.points.empty(); }),
               blocks.end());
}

// "plot 'loss.dat' index 0 with lines ..., '' index 1 ...": blocks numbered from first_index. A
// run's training line carries its legend entry; its validation points share the colour.
std::string plot_command(const std::string& data_name, const std::vector<Block>& blocks, size_t first_index,
                         bool legend) {
  std::ostringstream out;
  out << "plot ";
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block& b = blocks[i];
    out << (i == 0 ? gnuplot_quoted(data_name) : "''") << " index " << first_index + i
        << (b.validation ? " with linespoints pt 7 ps 1.2" : " with lines lw 2") << " lc " << b.run + 1
        << (legend && !b.validation ? " title " + gnuplot_quoted(b.label) : " notitle")
        << (i + 1 < blocks.size() ? ", \\\n     " : "\n");
  }
  return out.str();
}

// The data file: one gnuplot index block a curve (blocks are separated by two blank lines).
std::string data_text(const std::vector<Block>& blocks) {
  std::ostringstream out;
  out.precision(17);
  for (const Block& b : blocks) {
    out << "# " << b.comment << "\n# step value\n";
    for (const CurvePoint& p : b.points) out << p.step << ' ' << p.value << '\n';
    out << "\n\n";
  }
  return out.str();
}

std::string script(const fs::path& png, const fs::path& data, const std::string& title,
                   const std::vector<Block>& losses, const std::vector<Block>& differences,
                   const std::string& reference) {
  std::ostringstream out;
  out << "# Draws " << png.filename().string() << " from " << data.filename().string() << "; run `gnuplot "
      << png.stem().string() << ".gp` in this folder after editing.\n"
      << "set terminal png noenhanced size " << kWidth << "," << kHeight << "\n"
      << "set output " << gnuplot_quoted(png.filename().string()) << "\n"
      << "set grid\nset key top right opaque box\nset xlabel 'step'\nset ylabel 'loss'\n";
  const std::string full_title = title + " (lines: training, points: validation)";
  if (differences.empty()) {
    out << "set title " << gnuplot_quoted(full_title) << "\n"
        << plot_command(data.filename().string(), losses, 0, true);
    return out.str();
  }
  out << "set multiplot layout 2,1 title " << gnuplot_quoted(full_title) << "\n"
      << plot_command(data.filename().string(), losses, 0, true) << "set ylabel "
      << gnuplot_quoted("loss - " + reference + "'s") << "\nunset key\n"
      << plot_command(data.filename().string(), differences, losses.size(), false) << "unset multiplot\n";
  return out.str();
}

// Runs gnuplot on the script in the script's folder (which its file names are relative to).
void run_gnuplot(const fs::path& script_path) {
  const fs::path folder = script_path.parent_path().empty() ? fs::path(".") : script_path.parent_path();
  const std::string command =
      str("cd ", shell_quoted(folder.string()), " && gnuplot ", shell_quoted(script_path.filename().string()), " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  FT_CHECK(pipe != nullptr, "cannot start gnuplot for ", script_path.string());
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  FT_CHECK(code != 127, "the command `gnuplot` was not found, so ", script_path.string(),
           " was not drawn: ", kInstallGnuplot);
  FT_CHECK(code == 0, "gnuplot ", script_path.string(), " failed (exit code ", code, "): ", output);
}

}  // namespace

LossCurves read_loss_curves(const std::string& metrics_path) {
  LossCurves curves;
  for (const MetricsRow& row : read_metrics(metrics_path))
    for (auto [key, curve] : {std::pair{"loss", &curves.train}, std::pair{"val_loss", &curves.validation}}) {
      const auto it = row.values.find(key);
      if (it != row.values.end() && std::isfinite(it->second)) curve->push_back({row.step, it->second});
    }
  return curves;
}

Curve difference(const Curve& curve, const Curve& reference) {
  std::map<int64_t, double> by_step;
  for (const CurvePoint& p : reference) by_step[p.step] = p.value;
  Curve out;
  for (const CurvePoint& p : curve) {
    const auto it = by_step.find(p.step);
    if (it != by_step.end()) out.push_back({p.step, p.value - it->second});
  }
  return out;
}

std::string write_loss_plot_files(const std::string& png_path, const std::string& title,
                                  const std::vector<PlottedRun>& runs, bool differences) {
  std::vector<Block> losses = loss_blocks(runs);
  std::vector<Block> diffs = differences && runs.size() > 1 ? difference_blocks(runs) : std::vector<Block>();
  drop_empty(losses);
  drop_empty(diffs);
  FT_CHECK(!losses.empty(), png_path, ": no loss values to plot (the runs' metrics.jsonl hold none yet)");
  const fs::path png(png_path);
  if (!png.parent_path().empty()) fs::create_directories(png.parent_path());
  const fs::path data = fs::path(png).replace_extension(".dat"), script_path = fs::path(png).replace_extension(".gp");
  std::vector<Block> all = losses;
  all.insert(all.end(), diffs.begin(), diffs.end());
  io::write_text_file_atomically(data.string(), data_text(all));
  io::write_text_file_atomically(script_path.string(), script(png, data, title, losses, diffs, runs.front().label));
  return script_path.string();
}

void draw_loss_plot(const std::string& png_path, const std::string& title, const std::vector<PlottedRun>& runs,
                    bool differences) {
  run_gnuplot(write_loss_plot_files(png_path, title, runs, differences));
}

void plot_runs(const std::vector<std::string>& run_dirs, const std::string& png_path) {
  std::vector<PlottedRun> runs;
  for (const std::string& dir : run_dirs) runs.push_back({dir, read_loss_curves(metrics_file(dir))});
  draw_loss_plot(png_path, "loss", runs, false);
}

bool gnuplot_available() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

}  // namespace ft::train
