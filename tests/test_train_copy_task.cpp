// End to end on the CPU: a one-block GPT-2 trained for 200 steps on the synthetic copy task
// must at least halve its loss (it starts near ln(16) = 2.77 and the task is learnable).
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "framework/train/copy_task_run.h"

using namespace ft;

TEST_CASE("a one-block transformer halves its loss on the copy task in 200 steps") {
  train::CopyTaskOptions options;
  options.steps = 200;
  options.show_progress = false;
  train::CopyTaskResult r = train::train_copy_task(options);
  REQUIRE(r.losses.size() == 200);
  auto mean_of = [](auto first, auto last) { return std::accumulate(first, last, 0.0) / std::distance(first, last); };
  double start = mean_of(r.losses.begin(), r.losses.begin() + 5);
  double end = mean_of(r.losses.end() - 10, r.losses.end());
  MESSAGE("copy task: mean loss of steps 1-5 ", start, ", of steps 191-200 ", end);
  CHECK(std::abs(start - std::log(16.0)) < 0.3);  // an untrained model guesses uniformly
  CHECK(end < 0.5 * start);
}

TEST_CASE("the same seed trains to the same losses, bit for bit") {
  train::CopyTaskOptions options;
  options.steps = 5;
  options.show_progress = false;
  CHECK(train::train_copy_task(options).losses == train::train_copy_task(options).losses);
}
