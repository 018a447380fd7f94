// Line plots as standalone SVG files, for what a person would rather look at than read: a run's
// loss curves (runs/<name>/loss.svg, redrawn at every validation) and, later, flash-vs-math
// comparisons. No plotting library: an SVG is a few polylines, axes and labels.
#pragma once

#include <string>
#include <vector>

namespace ft::train {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // equal lengths; non-finite points are skipped
};

// Writes an SVG (atomically) with the series as coloured lines over shared axes, tick labels
// and a legend. Throws ft::Error when the file cannot be written.
void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::vector<PlotSeries>& series);

// The training and validation loss of a metrics.jsonl file (framework/train/metrics.h).
std::vector<PlotSeries> loss_series(const std::string& metrics_path);

}  // namespace ft::train
