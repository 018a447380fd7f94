// add_layer_norm: GPT-2's residual add and the layer norm after it, `sum = x + branch;
// normed = layer_norm(sum)`, as one forward kernel that reads x and branch once and writes sum,
// normed and the rows' mean and rstd (kernels/layer_norm).
//
// The autograd tape gives each node one output, so the fused forward records two nodes: an
// "add" whose backward passes the gradient through to x and branch, and a "layer_norm" node on
// sum with layer_norm's own backward (layer_norm_backward.h). The backward stays two steps
// because sum's gradient is the sum of two: the residual stream's from the later layers and the
// normalisation's. Autograd adds those before the add node runs, so fusing the backward would
// mean fusing across autograd's accumulation.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/layer_norm_backward.h"
#include "kernels/layer_norm/layer_norm_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/ops/cuda_dispatch.h"
#include "kernels/layer_norm/layer_norm_cuda.h"
#endif

namespace ft {
namespace {

void check_inputs(const Tensor& x, const Tensor& branch, const Tensor& weight, const Tensor& bias) {
  check_defined("add_layer_norm", "x", x);
  check_defined("add_layer_norm", "branch", branch);
  check_defined("add_layer_norm", "weight", weight);
  check_defined("add_layer_norm", "bias", bias);
  FT_CHECK(x.dim() >= 1 && x.size(-1) > 0, "add_layer_norm: x has shape ", shape_str(x.shape()),
           ", expected at least 1 dimension and a non-empty last one");
  FT_CHECK(branch.shape() == x.shape(), "add_layer_norm: x has shape ", shape_str(x.shape()), " and branch has shape ",
           shape_str(branch.shape()), ", expected the same shape (no broadcasting)");
  check_same_dtype_device("add_layer_norm", {x, branch, weight, bias});
  check_shape("add_layer_norm", "weight", weight, {x.size(-1)});
  check_shape("add_layer_norm", "bias", bias, {x.size(-1)});
}

// The add node's backward: d(x + branch)/dx = d(x + branch)/dbranch = 1.
std::vector<Tensor> residual_backward(const Tensor& g, const GradNeeds& needs) {
  return {needs[0] ? g : Tensor(), needs[1] ? g : Tensor()};
}

}  // namespace

ResidualNorm add_layer_norm(const Tensor& x, const Tensor& branch, const Tensor& weight, const Tensor& bias,
                            double eps) {
  check_inputs(x, branch, weight, bias);
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  const Tensor xc = x.contiguous(), branchc = branch.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  const Device device = x.device();
  // The statistics are fp32 on CUDA whatever x's dtype (as layer_norm keeps them).
  const DType stats_dtype = device.is_cuda() ? DType::f32 : x.dtype();
  Tensor sum = Tensor::empty(x.shape(), x.dtype(), device), normed = Tensor::empty(x.shape(), x.dtype(), device);
  Tensor mean = Tensor::empty({rows}, stats_dtype, device), rstd = Tensor::empty({rows}, stats_dtype, device);
  if (device.is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda("add_layer_norm", x, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::add_layer_norm_forward_cuda<T>(sum.data<T>(), normed.data<T>(), mean.data<float>(), rstd.data<float>(),
                                              xc.data<T>(), branchc.data<T>(), wc.data<T>(), bc.data<T>(), rows, cols,
                                              static_cast<float>(eps), stream);
    });
#endif
  } else {
    dispatch_float("add_layer_norm", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::add_layer_norm_forward_cpu<T>(sum.data<T>(), normed.data<T>(), mean.data<T>(), rstd.data<T>(),
                                             xc.data<T>(), branchc.data<T>(), wc.data<T>(), bc.data<T>(), rows, cols,
                                             static_cast<T>(eps));
    });
  }
  sum = record(sum, "add", {x, branch}, residual_backward);
  normed = record(normed, "layer_norm", {sum, weight, bias}, layer_norm_backward(sum, wc, mean, rstd));
  return {sum, normed};
}

}  // namespace ft
