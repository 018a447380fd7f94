// One AdamW step on the CPU (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"),
// in place on a parameter and its two moment estimates, with PyTorch's bias correction:
//   p -= lr * weight_decay * p                    (decoupled: the decay never enters m or v)
//   m  = beta1 m + (1 - beta1) g
//   v  = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// where t counts the parameter's updates, this one included (t >= 1).
#pragma once

#include <cmath>
#include <cstdint>

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

template <class T>
void adamw_step_cpu(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamWHyper& h);

}  // namespace ft::kernels
