// AdamW: Adam with decoupled weight decay, the optimizer GPT-2 and DistilBERT train with.
//
//   ft::AdamWOptions options;
//   options.lr = 6e-4;
//   ft::AdamW opt({{matrices, 0.1}, {biases_norms_embeddings, 0.0}}, options);
//   loss.backward(); opt.step(); opt.zero_grad();
//
// Which parameters decay is the caller's choice, one weight decay per group. Only trainable
// parameters (requires_grad) get optimizer state: frozen ones are dropped at construction and
// cost no memory. Each parameter counts its own updates for the bias correction, as PyTorch
// does, so a parameter that had no gradient at some steps is corrected for the steps it took.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/tensor.h"

namespace ft {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

struct ParamGroup {
  std::vector<Tensor> params;
  double weight_decay = 0.0;
};

// The state of one trainable parameter: the moment estimates (the parameter's dtype, on its
// device) and how many updates it has had. A checkpoint restores them by copying into the
// moment tensors (copy_) and setting step; replacing the tensors themselves is not supported.
struct AdamWState {
  Tensor exp_avg;
  Tensor exp_avg_sq;
  int64_t step = 0;
};

class AdamW {
 public:
  // Throws ft::Error on a parameter that is not a leaf, a trainable one that is not f32 or
  // f64 (f32 on a GPU) or not contiguous, a parameter listed twice, or hyperparameters out of
  // range.
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});

  // Updates in place, without autograd, every trainable parameter that has a gradient.
  void step();
  // Drops the gradients of the parameters.
  void zero_grad();

  double lr() const { return options_.lr; }
  void set_lr(double lr);
  // step() calls so far (restored from checkpoints with set_step_count).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }

  // The trainable parameters, in group order, and their states (same order).
  const std::vector<Tensor>& params() const { return params_; }
  std::vector<AdamWState>& states() { return states_; }
  const std::vector<AdamWState>& states() const { return states_; }
  size_t state_count() const { return states_.size(); }

 private:
  AdamWOptions options_;
  std::vector<Tensor> params_;
  std::vector<double> weight_decays_;
  std::vector<AdamWState> states_;
  int64_t step_count_ = 0;
};

}  // namespace ft
