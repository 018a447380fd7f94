// Learning-rate schedules: a linear warmup from 0 to the peak over `warmup` steps, then cosine
// or linear decay to `min_lr` at `total`, or constant. Steps count from 1.
#pragma once

#include <cstdint>
#include <string>

namespace ft {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  double lr = 1e-3;             // the peak
  double min_lr = 0.0;
  int64_t warmup = 0;
  int64_t total = 1;

  // The learning rate of step `step` (1-based); throws ft::Error for an unknown kind.
  double at(int64_t step) const;
};

}  // namespace ft
