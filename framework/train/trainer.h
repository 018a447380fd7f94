// The trainer: runs a recipe from start (or from its newest valid checkpoint) to the last
// step. Each optimizer step accumulates gradients over optim.grad_accum micro-batches, passes
// them to the gradient hook (where data-parallel training all-reduces them), clips them by
// their global norm, and updates with AdamW at the step's scheduled learning rate. Around that:
// a progress line, a metrics line per logged step, validation (loss and perplexity for GPT-2,
// masked-LM loss and masked-token accuracy for DistilBERT: the model sits behind ModelStep,
// framework/train/model_step.h), samples, and checkpoints. A non-finite loss or gradient norm stops the run with a
// message saying which step and what to try.
//
// Exact resume: parameters, optimizer moments, step, the loader's position and every generator
// are checkpointed, so a resumed run repeats the losses of an uninterrupted one bit for bit on
// the CPU (same thread count).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "framework/tensor.h"
#include "framework/train/recipe.h"

namespace ft::train {

struct TrainHooks {
  // Called after the backward passes of a step, before the norm and the update, with the
  // tensors whose gradients the update reads (the model's parameters; in mixed precision its
  // 16-bit ones, their gradients still multiplied by the loss scale): multi-GPU training
  // all-reduces the gradients here. Empty: single process.
  std::function<void(const std::vector<Tensor>& params)> reduce_gradients;
};

struct TrainSummary {
  std::string run_dir;
  int64_t first_step = 0;  // 1, or the step after the checkpoint it resumed from
  int64_t last_step = 0;
  double last_loss = 0;
  double last_val_loss = 0;  // NaN when never evaluated
  double tokens_per_second = 0;
};

TrainSummary run_training(const Recipe& recipe, const TrainHooks& hooks = {});

}  // namespace ft::train
