// sum and mean over all elements.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/reduce/reduce_cpu.h"

namespace ft {

Tensor sum(const Tensor& x) {
  check_defined("sum", "x", x);
  check_cpu("sum", {x});
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  dispatch_float("sum", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    *out.data<T>() = kernels::sum_cpu<T>(xc.data<T>(), x.numel());
  });
  // d(sum)/dx = 1 everywhere: the scalar gradient broadcast to x's shape.
  return record(out, "sum", {x}, [shape = x.shape()](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{mul(Tensor::full(shape, 1.0, g.dtype(), g.device()), g)};
  });
}

Tensor mean(const Tensor& x) {
  check_defined("mean", "x", x);
  FT_CHECK(x.numel() > 0, "mean: tensor ", describe(x), " is empty");
  return scale(sum(x), 1.0 / static_cast<double>(x.numel()));
}

}  // namespace ft
