// The global gradient norm and clipping by it (Pascanu et al. 2013): when the L2 norm of all
// gradients together exceeds max_norm, every gradient is scaled by max_norm / norm, so the
// update keeps its direction. A non-finite norm is returned as is and nothing is scaled: the
// trainer decides what to do with a step whose gradients overflowed.
#pragma once

#include <vector>

#include "framework/tensor.h"

namespace ft {

// sqrt(sum over parameters with a gradient of sum(grad^2)), accumulated in double.
double global_grad_norm(const std::vector<Tensor>& params);

// The sum over parameters with a gradient of sum(grad^2), accumulated in double, as an f64
// scalar left on the gradients' device: the host does not wait for it. AdamW::step reads it
// there to clip (and skip an overflowed step). Every gradient must be on one device.
Tensor grad_sum_of_squares(const std::vector<Tensor>& params);

// Scales the gradients when the norm exceeds max_norm (> 0); returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace ft
