// softmax over the last dimension, on kernels/softmax.
//
// The backward needs only the output y (dx = y * (dy - sum(dy * y)) per row), so the closure
// keeps a detached handle to y: holding the output itself would make it own its own node.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/softmax/softmax_cpu.h"

namespace ft {

Tensor softmax(const Tensor& x) {
  check_defined("softmax", "x", x);
  FT_CHECK(x.dim() >= 1, "softmax: x has shape ", shape_str(x.shape()), ", expected at least 1 dimension");
  check_cpu("softmax", {x});
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float("softmax", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::softmax_forward_cpu<T>(out.data<T>(), xc.data<T>(), rows, cols);
  });
  return record(out, "softmax", {x}, [y = out.detach(), rows, cols](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    dispatch_float("softmax backward", y.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::softmax_backward_cpu<T>(dx.data<T>(), gc.data<T>(), y.data<T>(), rows, cols);
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace ft
