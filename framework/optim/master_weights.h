// Mixed precision's fp32 master weights. A bf16 or f16 model computes its forward and backward
// in 16 bits, but an AdamW update of 1e-4 relative size vanishes when added to a bf16 weight
// (8 mantissa bits resolve 4e-3). So the optimizer updates fp32 copies, the masters, and each
// step's result is rounded back into the model's 16-bit parameters.
//
//   MasterWeights masters(model.parameters(), f32_model.parameters());
//   loss.backward();
//   masters.gradients_to_masters(1 / loss_scale);   // f32 gradients on the masters
//   optimizer.step();                               // an AdamW over masters.tensors()
//   masters.masters_to_params();
#pragma once

#include <vector>

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
  std::vector<Tensor> tensors() const;

  // Sets each master's gradient to its parameter's, converted to f32 and multiplied by
  // `factor` (1 / loss scale), then drops the parameters' 16-bit gradients. A parameter without
  // a gradient leaves its master without one.
  void gradients_to_masters(double factor) const;

  // Rounds every master into its parameter.
  void masters_to_params() const;

 private:
  std::vector<Tensor> params_;  // the trainable ones, in masters_ order
  ParameterList masters_;
};

}  // namespace ft
