// Mixed precision's fp32 master weights. A bf16 or f16 model computes its forward and backward
// in 16 bits, but an AdamW update of 1e-4 relative size vanishes when added to a bf16 weight
// (8 mantissa bits resolve 4e-3). So the optimizer updates fp32 copies, the masters, and each
// step's result is rounded back into the model's 16-bit parameters. AdamW does both ends in its
// one pass: it reads the 16-bit gradients and writes the rounded parameters (ParamGroup's
// compute copies), so no f32 gradient is ever stored.
//
//   MasterWeights masters(model.parameters(), f32_model.parameters());
//   AdamW optimizer(masters.groups(0.1));           // masters, paired with their 16-bit copies
//   loss.backward();                                // 16-bit gradients on the model
//   optimizer.step(grad_sum_of_squares(masters.params()), {1 / loss_scale, max_norm});
#pragma once

#include <vector>

#include "framework/optim/adamw.h"
#include "framework/parameter.h"

namespace ft {

class MasterWeights {
 public:
  // params: the model's 16-bit parameters; sources: f32 tensors of the same names and shapes on
  // the same device, which become the masters (their values are copied into params now).
  // Frozen parameters (requires_grad off) get no master.
  MasterWeights(const ParameterList& params, const ParameterList& sources);

  // The masters, named as their parameters and marked trainable: hand them to the optimizer
  // and to checkpoints.
  const ParameterList& masters() const { return masters_; }

  // The model's trainable 16-bit parameters, in masters() order: they hold the gradients.
  const std::vector<Tensor>& params() const { return params_; }

  // AdamW's groups: the masters by weight decay (weight_decay_groups), each paired with its
  // 16-bit parameter as the compute copy.
  std::vector<ParamGroup> groups(double weight_decay) const;

 private:
  std::vector<Tensor> params_;  // the trainable ones, in masters_ order
  ParameterList masters_;
};

}  // namespace ft
