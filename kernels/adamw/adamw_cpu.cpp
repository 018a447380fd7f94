#include "kernels/adamw/adamw_cpu.h"

#include <cmath>

namespace ft::kernels {

template <class T>
void adamw_step_cpu(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamWHyper& h) {
  const double t = static_cast<double>(h.t);
  const T decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
  const T step_size = static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, t)));
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(h.beta2, t)));
  const T beta1 = static_cast<T>(h.beta1), beta2 = static_cast<T>(h.beta2), eps = static_cast<T>(h.eps);
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    const T m = beta1 * exp_avg[i] + (T(1) - beta1) * g;
    const T v = beta2 * exp_avg_sq[i] + (T(1) - beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = param[i] * decay - step_size * m / (std::sqrt(v) / bias_correction2_sqrt + eps);
  }
}

template void adamw_step_cpu<float>(float*, const float*, float*, float*, int64_t, const AdamWHyper&);
template void adamw_step_cpu<double>(double*, const double*, double*, double*, int64_t, const AdamWHyper&);

}  // namespace ft::kernels
