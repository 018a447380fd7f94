#include "framework/train/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace ft::train {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string format_count(double value) {
  char buf[32];
  if (value >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", value / 1e6);
  else if (value >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fK", value / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", value);
  return buf;
}

ProgressLine::ProgressLine(int64_t total_steps, int64_t every, int64_t first_step)
    : total_(total_steps),
      every_(every < 1 ? 1 : every),
      first_(first_step),
      terminal_(isatty(STDERR_FILENO)),
      start_(Clock::now()),
      last_step_(first_step) {}

double ProgressLine::tokens_per_second() const {
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  return elapsed > 0 ? tokens_ / elapsed : 0;
}

void ProgressLine::update(int64_t step, double loss, int64_t tokens) {
  tokens_ += tokens;
  last_step_ = step;
  if (!terminal_ && step % every_ != 0 && step != total_) return;
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const int64_t done = step - first_;
  double eta = done > 0 ? elapsed / done * (total_ - step) : NAN;
  std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f | %s tok/s | ETA %s%s", terminal_ ? "\r" : "",
               static_cast<long long>(step), static_cast<long long>(total_), loss,
               format_count(tokens_per_second()).c_str(), format_duration(eta).c_str(), terminal_ ? "   " : "\n");
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (terminal_ && last_step_ > first_) std::fprintf(stderr, "\n");
}

void ProgressLine::note(const std::string& line) {
  std::fprintf(stderr, "%s%s\n", terminal_ ? "\r" : "", line.c_str());
  std::fflush(stderr);
}

}  // namespace ft::train
