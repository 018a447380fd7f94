// Trains a small GPT-2 on the synthetic copy task (data/copy_task.h) with AdamW: the end-to-end
// check that the tape, the ops and the optimizer learn together, and what `flashtrain train`
// runs until recipes drive real data. Each step's loss is returned and, if asked, written as a
// JSON line to a metrics file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ft::train {

struct CopyTaskOptions {
  int64_t steps = 200;
  int64_t batch = 16;
  int64_t seq_len = 16;
  int64_t vocab = 16;
  int64_t n_layer = 1;
  int64_t n_head = 2;
  int64_t n_embd = 32;
  double lr = 3e-3;
  double weight_decay = 0.01;
  uint64_t seed = 1;
  std::string metrics_path;  // empty: no file
  bool show_progress = true;
};

struct CopyTaskResult {
  std::vector<double> losses;  // one per step
  double tokens_per_second = 0;
  int64_t parameter_count = 0;
};

CopyTaskResult train_copy_task(const CopyTaskOptions& options);

}  // namespace ft::train
