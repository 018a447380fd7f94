// layer_norm over the last dimension, on kernels/layer_norm.
//
// The forward keeps each row's mean and reciprocal std (two small [rows] tensors) for the
// backward, which then needs x but not the normalised x: it recomputes xhat on the fly.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/layer_norm/layer_norm_cpu.h"

namespace ft {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_defined("layer_norm", "x", x);
  check_defined("layer_norm", "weight", weight);
  check_defined("layer_norm", "bias", bias);
  FT_CHECK(x.dim() >= 1 && x.size(-1) > 0, "layer_norm: x has shape ", shape_str(x.shape()),
           ", expected at least 1 dimension and a non-empty last one");
  check_same_dtype_device("layer_norm", {x, weight, bias});
  check_cpu("layer_norm", {x, weight, bias});
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  check_shape("layer_norm", "weight", weight, {cols});
  check_shape("layer_norm", "bias", bias, {cols});

  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::layer_norm_forward_cpu<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), xc.data<T>(), wc.data<T>(),
                                       bc.data<T>(), rows, cols, static_cast<T>(eps));
  });
  return record(out, "layer_norm", {x, weight, bias},
                [xc, wc, mean, rstd, rows, cols](const Tensor& g, const GradNeeds&) {
                  Tensor gc = g.contiguous();
                  Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
                  Tensor dweight = Tensor::empty({cols}, xc.dtype(), xc.device());
                  Tensor dbias = Tensor::empty({cols}, xc.dtype(), xc.device());
                  dispatch_float("layer_norm backward", xc.dtype(), [&](auto tag) {
                    using T = decltype(tag);
                    kernels::layer_norm_backward_cpu<T>(dx.data<T>(), dweight.data<T>(), dbias.data<T>(),
                                                        gc.data<T>(), xc.data<T>(), wc.data<T>(), mean.data<T>(),
                                                        rstd.data<T>(), rows, cols);
                  });
                  return std::vector<Tensor>{dx, dweight, dbias};
                });
}

}  // namespace ft
