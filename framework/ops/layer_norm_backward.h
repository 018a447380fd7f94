// The backward of a layer-norm node, shared by layer_norm and add_layer_norm (which records
// its normalisation as a layer_norm node of its own), so both run the very same kernels.
// The closure needs the forward's contiguous input and weight and the row statistics it saved;
// those are fp32 on CUDA whatever the input's dtype, and the input's dtype on the CPU.
#pragma once

#include "framework/autograd.h"

namespace ft {

// xc: [rows, cols] contiguous (any leading shape); wc: [cols]; mean, rstd: [rows]. The closure
// maps the output's gradient to those of (x, weight, bias), on xc's device.
BackwardFn layer_norm_backward(const Tensor& xc, const Tensor& wc, const Tensor& mean, const Tensor& rstd);

}  // namespace ft
