#include "kernels/adamw/adamw_cpu.h"

#include <cmath>

namespace ft::kernels {

template <class T>
void adamw_step_cpu(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamWHyper& h, T grad_factor) {
  const AdamWCoefficients<T> c = adamw_coefficients<T>(h);
  const T decay = c.decay, step_size = c.step_size, bias_correction2_sqrt = c.bias_correction2_sqrt;
  const T beta1 = c.beta1, beta2 = c.beta2, eps = c.eps;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * grad_factor;
    const T m = beta1 * exp_avg[i] + (T(1) - beta1) * g;
    const T v = beta2 * exp_avg_sq[i] + (T(1) - beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = param[i] * decay - step_size * m / (std::sqrt(v) / bias_correction2_sqrt + eps);
  }
}

template void adamw_step_cpu<float>(float*, const float*, float*, float*, int64_t, const AdamWHyper&, float);
template void adamw_step_cpu<double>(double*, const double*, double*, double*, int64_t, const AdamWHyper&, double);

}  // namespace ft::kernels
