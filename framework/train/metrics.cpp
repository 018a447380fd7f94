#include "framework/train/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>
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

}  // namespace ft::train
