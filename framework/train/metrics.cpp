#include "framework/train/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/error.h"

namespace ft::train {
namespace {

// The step of a metrics line written by MetricsLog ({"step": N, ...}), or -1.
int64_t step_of(const std::string& line) {
  long long step = -1;
  return std::sscanf(line.c_str(), "{\"step\": %lld", &step) == 1 ? step : -1;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  std::vector<std::string> kept;
  if (keep_through_step > 0) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      int64_t step = step_of(line);
      if (step >= 0 && step <= keep_through_step) kept.push_back(line);
    }
  }
  out_.open(path, std::ios::trunc);
  FT_CHECK(out_, "cannot write the metrics file '", path, "'");
  for (const std::string& line : kept) out_ << line << '\n';
  out_.flush();
}

void MetricsLog::write(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  std::ostringstream line;
  line << "{\"step\": " << step;
  for (const auto& [name, value] : values) {
    line << ", \"" << name << "\": ";
    // The shortest text that reads back as the same double: a resumed run's losses can be
    // compared bit for bit with an uninterrupted one's. JSON has no NaN or infinity.
    char text[32];
    line << (std::isfinite(value) ? std::string(text, std::to_chars(text, text + sizeof text, value).ptr) : "null");
  }
  line << "}\n";
  out_ << line.str();
  out_.flush();
}

std::string metrics_file(const std::string& run_dir) {
  return (std::filesystem::path(run_dir) / "metrics.jsonl").string();
}

std::vector<MetricsRow> read_metrics(const std::string& path) {
  std::ifstream in(path);
  FT_CHECK(in, path, ": cannot read the metrics file");
  std::vector<MetricsRow> rows;
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
    FT_CHECK(object.is_object() && object.contains("step") && object["step"].is_number_integer(), path, ":",
             line_number, ": not a metrics line (expected a JSON object with an integer \"step\")");
    MetricsRow row{object["step"].get<int64_t>(), {}};
    for (const auto& [key, value] : object.items())
      if (key != "step" && value.is_number()) row.values[key] = value.get<double>();
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace ft::train
