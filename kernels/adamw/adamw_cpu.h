// One AdamW step on the CPU (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"),
// in place on a parameter and its two moment estimates, with PyTorch's bias correction:
//   p -= lr * weight_decay * p                    (decoupled: the decay never enters m or v)
//   m  = beta1 m + (1 - beta1) g
//   v  = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// where t counts the parameter's updates, this one included (t >= 1).
//
// The gradient g is the stored one times a factor for the whole step (adamw_gradient_factor):
// 1 / the loss scale, times the clipping factor min(1, max_norm / norm) when the global norm
// exceeds max_norm. Folding both into the update's one read of g saves two passes over every
// gradient, and computing the factor where the update runs (on the GPU, from the sum of
// squares the norm kernel left there) saves the host a wait inside the step.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace ft::kernels {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t t;
};

// One step's constants in the arithmetic's precision T, derived in double. The CUDA kernel
// (adamw.cu) takes the same constants and does the same float operations in the same order.
template <class T>
struct AdamWCoefficients {
  T decay, step_size, bias_correction2_sqrt, beta1, beta2, eps;
};

template <class T>
AdamWCoefficients<T> adamw_coefficients(const AdamWHyper& h) {
  const double t = static_cast<double>(h.t);
  return {static_cast<T>(1.0 - h.lr * h.weight_decay),
          static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, t))),
          static_cast<T>(std::sqrt(1.0 - std::pow(h.beta2, t))),
          static_cast<T>(h.beta1),
          static_cast<T>(h.beta2),
          static_cast<T>(h.eps)};
}

// How step() scales the gradients it reads. sum_squares is the sum of the squares of all the
// stored gradients (scaled by the loss scale, as the backward left them), unscale is 1 / that
// scale, max_norm the clipping threshold (0: no clipping).
struct GradientScaling {
  double unscale = 1.0;
  double max_norm = 0.0;
};

// The global norm of the true (unscaled) gradients.
FT_HOST_DEVICE double unscaled_norm(double sum_squares, const GradientScaling& s) {
  return std::sqrt(sum_squares) * s.unscale;
}

// The factor every stored gradient is multiplied by this step, or NaN when the norm is not
// finite: then the step must leave the parameters and moments as they are (an fp16 overflow).
FT_HOST_DEVICE double adamw_gradient_factor(double sum_squares, const GradientScaling& s) {
  const double norm = unscaled_norm(sum_squares, s);
  if (!std::isfinite(norm)) return NAN;
  return s.max_norm > 0 && norm > s.max_norm ? s.unscale * (s.max_norm / norm) : s.unscale;
}

// One step with every gradient multiplied by grad_factor (in T) before it is used.
template <class T>
void adamw_step_cpu(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamWHyper& h, T grad_factor);

}  // namespace ft::kernels
