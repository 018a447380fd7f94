#include "framework/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "framework/error.h"

namespace ft {

double LrSchedule::at(int64_t step) const {
  if (step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(warmup, 1));
  if (kind == "constant") return lr;
  // Progress through the decay, 0 just after warmup and 1 at the last step.
  const double span = static_cast<double>(std::max<int64_t>(total - warmup, 1));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  if (kind == "cosine") return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
  if (kind == "linear") return lr + (min_lr - lr) * progress;
  throw Error(str("unknown learning-rate schedule '", kind, "' (expected cosine, linear or constant)"));
}

}  // namespace ft
