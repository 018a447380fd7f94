// softmax over the last dimension, on kernels/softmax (a warp per row on CUDA).
//
// The backward needs only the output y (dx = y * (dy - sum(dy * y)) per row), so the closure
// keeps a detached handle to y: holding the output itself would make it own its own node.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/softmax/softmax_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/softmax/softmax_cuda.h"
#endif

namespace ft {

Tensor softmax(const Tensor& x) {
  check_defined("softmax", "x", x);
  FT_CHECK(x.dim() >= 1, "softmax: x has shape ", shape_str(x.shape()), ", expected at least 1 dimension");
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(x.device().index);
    dispatch_cuda_float("softmax", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::softmax_forward_cuda<T, T>(out.data<T>(), xc.data<T>(), rows, cols, {},
                                          cuda::context(x.device().index).stream);
    });
#endif
  } else {
    dispatch_float("softmax", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::softmax_forward_cpu<T>(out.data<T>(), xc.data<T>(), rows, cols);
    });
  }
  return record(out, "softmax", {x}, [y = out.detach(), rows, cols](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    if (y.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
      cuda::DeviceGuard guard(y.device().index);
      dispatch_cuda_float("softmax backward", y.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kernels::softmax_backward_cuda<T, T>(dx.data<T>(), gc.data<T>(), y.data<T>(), rows, cols, 1.0f,
                                             cuda::context(y.device().index).stream);
      });
#endif
    } else {
      dispatch_float("softmax backward", y.dtype(), [&](auto tag) {
        using T = decltype(tag);
        kernels::softmax_backward_cpu<T>(dx.data<T>(), gc.data<T>(), y.data<T>(), rows, cols);
      });
    }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace ft
