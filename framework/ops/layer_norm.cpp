// layer_norm over the last dimension, on kernels/layer_norm.
//
// The forward keeps each row's mean and reciprocal std (two small [rows] tensors) for the
// backward, which then needs x but not the normalised x: it recomputes xhat on the fly. On
// CUDA those two are fp32 whatever x's dtype (bf16 statistics would cost the backward digits).
// The backward closure is layer_norm_backward.h's, shared with add_layer_norm.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/layer_norm_backward.h"
#include "kernels/layer_norm/layer_norm_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/layer_norm/layer_norm_cuda.h"
#endif

namespace ft {
namespace {
#ifdef FLASHTRAIN_HAS_CUDA

template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// xc, wc, bc: contiguous, on one GPU.
Tensor layer_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& xc, const Tensor& wc,
                       const Tensor& bc, int64_t rows, int64_t cols, double eps) {
  const Device device = x.device();
  cuda::DeviceGuard guard(device.index);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  Tensor mean = Tensor::empty({rows}, DType::f32, device);
  Tensor rstd = Tensor::empty({rows}, DType::f32, device);
  dispatch_cuda_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::layer_norm_forward_cuda<T>(out.data<T>(), mean.data<float>(), rstd.data<float>(), xc.data<T>(),
                                        wc.data<T>(), bc.data<T>(), rows, cols, static_cast<float>(eps),
                                        cuda::context(device.index).stream);
  });
  return record(out, "layer_norm", {x, weight, bias}, layer_norm_backward(xc, wc, mean, rstd));
}

// The backward computes only the gradients asked for (frozen norms skip the parameter sums).
BackwardFn layer_norm_backward_cuda(const Tensor& xc, const Tensor& wc, const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = mean.numel(), cols = wc.numel();
  return [xc, wc, mean, rstd, rows, cols](const Tensor& g, const GradNeeds& needs) {
    const Device device = xc.device();
    cuda::DeviceGuard guard(device.index);
    Tensor gc = g.contiguous();
    auto gradient = [&](bool needed, const Shape& shape) {
      return needed ? Tensor::empty(shape, xc.dtype(), device) : Tensor();
    };
    Tensor dx = gradient(needs[0], xc.shape());
    Tensor dweight = gradient(needs[1], {cols}), dbias = gradient(needs[2], {cols});
    Tensor scratch;
    if (needs[1] || needs[2])
      scratch = Tensor::empty({kernels::layer_norm_backward_scratch_floats(rows, cols)}, DType::f32, device);
    dispatch_cuda_float("layer_norm backward", xc.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::layer_norm_backward_cuda<T>(data_or_null<T>(dx), data_or_null<T>(dweight), data_or_null<T>(dbias),
                                           data_or_null<float>(scratch), gc.data<T>(), xc.data<T>(), wc.data<T>(),
                                           mean.data<float>(), rstd.data<float>(), rows, cols,
                                           cuda::context(device.index).stream);
    });
    return std::vector<Tensor>{dx, dweight, dbias};
  };
}

#endif

BackwardFn layer_norm_backward_cpu(const Tensor& xc, const Tensor& wc, const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = mean.numel(), cols = wc.numel();
  return [xc, wc, mean, rstd, rows, cols](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
    Tensor dweight = Tensor::empty({cols}, xc.dtype(), xc.device());
    Tensor dbias = Tensor::empty({cols}, xc.dtype(), xc.device());
    dispatch_float("layer_norm backward", xc.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::layer_norm_backward_cpu<T>(dx.data<T>(), dweight.data<T>(), dbias.data<T>(), gc.data<T>(), xc.data<T>(),
                                          wc.data<T>(), mean.data<T>(), rstd.data<T>(), rows, cols);
    });
    return std::vector<Tensor>{dx, dweight, dbias};
  };
}

}  // namespace

BackwardFn layer_norm_backward(const Tensor& xc, const Tensor& wc, const Tensor& mean, const Tensor& rstd) {
#ifdef FLASHTRAIN_HAS_CUDA
  if (xc.device().is_cuda()) return layer_norm_backward_cuda(xc, wc, mean, rstd);
#endif
  return layer_norm_backward_cpu(xc, wc, mean, rstd);
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_defined("layer_norm", "x", x);
  check_defined("layer_norm", "weight", weight);
  check_defined("layer_norm", "bias", bias);
  FT_CHECK(x.dim() >= 1 && x.size(-1) > 0, "layer_norm: x has shape ", shape_str(x.shape()),
           ", expected at least 1 dimension and a non-empty last one");
  check_same_dtype_device("layer_norm", {x, weight, bias});
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  check_shape("layer_norm", "weight", weight, {cols});
  check_shape("layer_norm", "bias", bias, {cols});

  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
#ifdef FLASHTRAIN_HAS_CUDA
  if (x.device().is_cuda()) return layer_norm_cuda(x, weight, bias, xc, wc, bc, rows, cols, eps);
#endif
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());
  dispatch_float("layer_norm", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::layer_norm_forward_cpu<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), xc.data<T>(), wc.data<T>(),
                                       bc.data<T>(), rows, cols, static_cast<T>(eps));
  });
  return record(out, "layer_norm", {x, weight, bias}, layer_norm_backward(xc, wc, mean, rstd));
}

}  // namespace ft
