// One AdamW step on the CPU (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"),
// in place on a parameter and its two moment estimates, with PyTorch's bias correction:
//   p -= lr * weight_decay * p                    (decoupled: the decay never enters m or v)
//   m  = beta1 m + (1 - beta1) g
//   v  = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// where t counts the parameter's updates, this one included (t >= 1).
#pragma once

#include <cstdint>

namespace ft::kernels {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t t;
};

template <class T>
void adamw_step_cpu(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamWHyper& h);

}  // namespace ft::kernels
