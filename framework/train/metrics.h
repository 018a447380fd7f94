// The metrics file of a run: one JSON object per line ("step", "loss", "lr", ...), easy to plot
// with any tool. On resume the file is cut back to the steps before the checkpoint, so it
// always reads as one continuous run.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ft::train {

class MetricsLog {
 public:
  // Opens `path`, keeping only lines whose step is <= keep_through_step (all of a fresh run's
  // file is dropped when keep_through_step is 0).
  MetricsLog(const std::string& path, int64_t keep_through_step);
  // Writes {"step": step, name: value, ...} as one line and flushes.
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// A run folder's metrics file: <run_dir>/metrics.jsonl.
std::string metrics_file(const std::string& run_dir);

// One line of a metrics file: its step and every numeric value by name.
struct MetricsRow {
  int64_t step = 0;
  std::map<std::string, double> values;
};

// Every line of a metrics file, in file order. Throws ft::Error naming the file and line when
// one is not a JSON object with a "step".
std::vector<MetricsRow> read_metrics(const std::string& path);

}  // namespace ft::train
