// AdamW: Adam with decoupled weight decay, the optimizer GPT-2 and DistilBERT train with.
//
//   ft::AdamWOptions options;
//   options.lr = 6e-4;
//   ft::AdamW opt({{matrices, 0.1}, {biases_norms_embeddings, 0.0}}, options);
//   loss.backward(); opt.step(); opt.zero_grad();
//
// Which parameters decay is the caller's choice, one weight decay per group. A training step
// that clips by the global norm, unscales fp16 gradients or skips an overflowed step hands
// step() the gradients' sum of squares on their device (grad_sum_of_squares), so the decision
// is made there and the host never waits for it. Mixed precision: a group's `compute` lists the
// 16-bit copies the model computes with; the step reads their gradients and writes them the
// updated f32 parameters (the masters) rounded, in the same pass. Only trainable
// parameters (requires_grad) get optimizer state: frozen ones are dropped at construction and
// cost no memory. Each parameter counts its own updates for the bias correction, as PyTorch
// does, so a parameter that had no gradient at some steps is corrected for the steps it took.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "framework/parameter.h"
#include "framework/tensor.h"
#include "kernels/adamw/adamw_cpu.h"

namespace ft {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

struct ParamGroup {
  ParamGroup(std::vector<Tensor> params = {}, double weight_decay = 0.0, std::vector<Tensor> compute = {})
      : params(std::move(params)), weight_decay(weight_decay), compute(std::move(compute)) {}

  std::vector<Tensor> params;
  double weight_decay;
  // Empty, or one 16-bit tensor per parameter (same shape and device): its gradient is the one
  // the step uses, and the step rounds the updated parameter into it.
  std::vector<Tensor> compute;
};

// How step() scales the gradients: by unscale (1 / the loss scale), and clipped to a global
// norm of max_norm when that is positive.
using GradientScaling = kernels::GradientScaling;

// Two groups, GPT-2 practice: the parameters whose weight_decay flag is set decay by
// weight_decay (group 0), the others (biases, norms, embeddings) not at all (group 1).
std::vector<ParamGroup> weight_decay_groups(const ParameterList& params, double weight_decay);

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
  // The same with every gradient multiplied by adamw_gradient_factor(sum_squares, scaling),
  // where grad_sum_squares is grad_sum_of_squares over the gradients step() reads (an f64
  // scalar on the parameters' device). When that factor is NaN (the norm is not finite), the
  // parameters and moments stay as they are, though the step is counted: the caller, which
  // learns the norm later, calls uncount_step() then.
  void step(const Tensor& grad_sum_squares, const GradientScaling& scaling);
  // Takes back the step counts of the last step() (one the device skipped); once per step.
  void uncount_step();
  // Drops the gradients of the parameters (and of their 16-bit compute copies).
  void zero_grad();

  double lr() const { return options_.lr; }
  void set_lr(double lr);
  // step() calls so far (restored from checkpoints with set_step_count).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }

  // The trainable parameters, in group order, and their states (same order).
  const std::vector<Tensor>& params() const { return params_; }
  // The tensors whose gradients step() reads: each parameter's compute copy where it has one,
  // else the parameter itself (same order).
  std::vector<Tensor> gradient_holders() const;
  std::vector<AdamWState>& states() { return states_; }
  const std::vector<AdamWState>& states() const { return states_; }
  size_t state_count() const { return states_.size(); }

 private:
  void step_cpu(const Tensor& grad_sum_squares, const GradientScaling& scaling);
  void step_cuda(const Tensor& grad_sum_squares, const GradientScaling& scaling);

  AdamWOptions options_;
  std::vector<Tensor> params_;
  std::vector<Tensor> compute_;  // parallel to params_; undefined where a parameter has no copy
  std::vector<double> weight_decays_;
  std::vector<size_t> last_stepped_;  // the parameters the last step() counted
  bool can_uncount_ = false;
  std::vector<AdamWState> states_;
  int64_t step_count_ = 0;
};

}  // namespace ft
