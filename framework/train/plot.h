// Loss plots as PNG files drawn by gnuplot (Debian's gnuplot-nox): a run's curves
// (runs/<name>/loss.png, redrawn at every validation), `flashtrain plot` over several runs, and
// a comparison's two panels (the losses, then each run's difference from the first). Beside
// FILE.png go FILE.dat (the points, one gnuplot index block per curve) and FILE.gp (the
// script), so a person can edit the script and run `gnuplot FILE.gp` in that folder again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ft::train {

// (step, value) points in step order.
struct CurvePoint {
  int64_t step = 0;
  double value = 0;
};
using Curve = std::vector<CurvePoint>;

struct LossCurves {
  Curve train, validation;
};

// The finite "loss" and "val_loss" values of a metrics.jsonl file (framework/train/metrics.h).
LossCurves read_loss_curves(const std::string& metrics_path);

// curve - reference at the steps both have, in step order.
Curve difference(const Curve& curve, const Curve& reference);

struct PlottedRun {
  std::string label;
  LossCurves curves;
};

// Draws the runs' training (lines) and validation (points) losses on shared axes into
// png_path (1000 x 700); with `differences`, a second panel below of each later run's losses
// minus the first run's. Throws ft::Error when gnuplot is missing or fails.
void draw_loss_plot(const std::string& png_path, const std::string& title, const std::vector<PlottedRun>& runs,
                    bool differences);

// draw_loss_plot's files without gnuplot: the data and the script beside png_path (FILE.dat,
// FILE.gp), for `gnuplot FILE.gp` in that folder later; returns the script's path.
std::string write_loss_plot_files(const std::string& png_path, const std::string& title,
                                  const std::vector<PlottedRun>& runs, bool differences);

// `flashtrain plot`: the losses of existing run folders (their metrics.jsonl), labelled by folder.
void plot_runs(const std::vector<std::string>& run_dirs, const std::string& png_path);

// Whether a `gnuplot` is on the PATH (the trainer skips its plot, and a comparison leaves its
// plot's data and script, with a warning when not).
bool gnuplot_available();

// What to tell a user who has no gnuplot.
extern const char* const kInstallGnuplot;

}  // namespace ft::train
