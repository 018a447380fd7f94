#include "framework/optim/grad_norm.h"

#include <cmath>

#include "framework/ops/checks.h"
#include "kernels/elementwise/elementwise_cpu.h"
#include "kernels/reduce/reduce_cpu.h"

namespace ft {

double global_grad_norm(const std::vector<Tensor>& params) {
  double total = 0.0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_cpu("global_grad_norm", {g});
    Tensor gc = g.contiguous();
    dispatch_float("global_grad_norm", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      total += kernels::sum_squares_cpu<T>(gc.data<T>(), g.numel());
    });
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  FT_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  const double norm = global_grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double factor = max_norm / norm;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    FT_CHECK(g.is_contiguous(), "clip_grad_norm: gradient of ", describe(p), " is not contiguous");
    dispatch_float("clip_grad_norm", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::scale_cpu<T>(g.data<T>(), g.data<T>(), static_cast<T>(factor), g.numel());
    });
  }
  return norm;
}

}  // namespace ft
