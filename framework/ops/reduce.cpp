// sum and mean over all elements, and sum_to_shape (the backward of broadcasting), on
// kernels/reduce; sum_to_shape's CPU kernel lives beside the broadcasting it undoes, in
// kernels/elementwise.
//
// On CUDA both sums are one kernel (kernels/reduce/reduce.cu) accumulating in fp32 in an order
// that the shapes alone fix, so a result is the same bits on every run. The CPU sums in double.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/cuda_dispatch.h"
#include "kernels/elementwise/elementwise_cpu.h"
#include "kernels/reduce/reduce_cpu.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "kernels/reduce/reduce_cuda.h"
#endif

namespace ft {
namespace {

#ifdef FLASHTRAIN_HAS_CUDA
// out = xc (contiguous) summed as planned on its GPU, with fp32 scratch for the partial sums
// when the plan splits the work. The scratch may be freed at once: its next user queues behind
// this kernel on the same stream.
void sum_on_cuda(const char* op, const Tensor& out, const Tensor& xc, const kernels::SumPlan& plan) {
  Tensor workspace;
  if (plan.workspace_floats() > 0) workspace = Tensor::empty({plan.workspace_floats()}, DType::f32, xc.device());
  float* scratch = workspace.defined() ? workspace.data<float>() : nullptr;
  dispatch_cuda(op, xc, [&](auto tag, cudaStream_t stream) {
    using T = decltype(tag);
    kernels::sum_cuda<T>(out.data<T>(), xc.data<T>(), plan, scratch, stream);
  });
}
#endif

}  // namespace

Tensor sum(const Tensor& x) {
  check_defined("sum", "x", x);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    sum_on_cuda("sum", out, xc, kernels::plan_sum(x.numel()));
#endif
  } else {
    dispatch_float("sum", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      *out.data<T>() = kernels::sum_cpu<T>(xc.data<T>(), x.numel());
    });
  }
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

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  check_defined("sum_to_shape", "x", x);
  if (x.shape() == shape) return x;
  FT_CHECK(shape.size() <= x.shape().size(), "sum_to_shape: ", shape_str(shape), " has more dimensions than ",
           shape_str(x.shape()));
  Shape padded(x.shape().size() - shape.size(), 1);
  padded.insert(padded.end(), shape.begin(), shape.end());
  for (size_t d = 0; d < padded.size(); ++d)
    FT_CHECK(padded[d] == 1 || padded[d] == x.shape()[d], "sum_to_shape: ", shape_str(shape), " does not broadcast to ",
             shape_str(x.shape()));
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    sum_on_cuda("sum_to_shape", out, xc, kernels::plan_sum_to_shape(xc.shape(), padded));
#endif
    return out;
  }
  dispatch_float("sum_to_shape", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::sum_to_shape_cpu<T>(out.data<T>(), xc.data<T>(), xc.shape(), padded);
  });
  return out;
}

}  // namespace ft
