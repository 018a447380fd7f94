// The live progress line of long runs: "step 120/200 | loss 1.2345 | 5.1K tok/s | ETA 0:16".
// It rewrites one terminal line when stderr is a terminal and prints plain lines every
// `every` steps otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ft::train {

class ProgressLine {
 public:
  // Steps first_step+1 .. total_steps are to run (first_step > 0 after a resume).
  ProgressLine(int64_t total_steps, int64_t every = 10, int64_t first_step = 0);
  // Reports a finished step; tokens is how many tokens that step consumed.
  void update(int64_t step, double loss, int64_t tokens);
  void finish();
  // Prints a line of its own (a validation result) without garbling the progress line.
  void note(const std::string& line);
  double tokens_per_second() const;

 private:
  using Clock = std::chrono::steady_clock;
  int64_t total_, every_, first_;
  bool terminal_;
  Clock::time_point start_;
  int64_t tokens_ = 0;
  int64_t last_step_ = 0;
};

// "1:02:03" or "2:03".
std::string format_duration(double seconds);
// "950", "12.3K", "4.56M".
std::string format_count(double value);

}  // namespace ft::train
