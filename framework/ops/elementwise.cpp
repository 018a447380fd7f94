// add, sub, mul (broadcasting), scale, GELU (tanh or erf form), ReLU and add_ (the in-place sum of gradient
// accumulation), on kernels/elementwise. Their backward undoes broadcasting with sum_to_shape
// (framework/ops/reduce.cpp).
//
// On CUDA, f32/bf16/f16 tensors compute in fp32 and round once per output; scale's factor is
// applied in fp32 there (as the CPU's f32 path does).
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "framework/ops/cuda_dispatch.h"
#include "kernels/elementwise/elementwise_cpu.h"

#ifdef FLASHTRAIN_HAS_CUDA
#include "kernels/elementwise/elementwise_cuda.h"
#endif

namespace ft {
namespace {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    FT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast (sizes ", da, " and ", db, " in dimension ", i, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides that read a contiguous tensor of shape `in` as if it had shape `out`.
Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape strides(out.size(), 0);
  Shape own = contiguous_strides(in);
  size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) strides[lead + i] = in[i] == 1 ? 0 : own[i];
  return strides;
}

Tensor binary_forward(const char* op_name, kernels::BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined(op_name, "a", a);
  check_defined(op_name, "b", b);
  check_same_dtype_device(op_name, {a, b});
  Shape shape = broadcast_shapes(op_name, a.shape(), b.shape());
  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  const Shape a_strides = broadcast_strides(a.shape(), shape), b_strides = broadcast_strides(b.shape(), shape);
  if (out.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda(op_name, out, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::binary_cuda<T>(op, out.data<T>(), ac.data<T>(), bc.data<T>(), shape, a_strides, b_strides, stream);
    });
#endif
    return out;
  }
  dispatch_float(op_name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::binary_cpu<T>(op, out.data<T>(), ac.data<T>(), bc.data<T>(), shape, a_strides, b_strides);
  });
  return out;
}

// An elementwise activation: ReLU, or GELU in one of its forms.
struct Activation {
  const char* name;
  bool relu;
  GeluForm form;  // when not relu
};

// y = act(x) when dy is undefined, else dx = act'(x) dy; x and dy contiguous.
Tensor run_activation(const Activation& act, const char* op, const Tensor& x, const Tensor& dy) {
  const bool backward = dy.defined();
  const int64_t n = x.numel();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda(op, x, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      T* o = out.data<T>();
      const T* in = x.data<T>();
      if (!backward && act.relu) kernels::relu_forward_cuda<T>(o, in, n, stream);
      if (!backward && !act.relu) kernels::gelu_forward_cuda<T>(o, in, n, stream, act.form);
      if (backward && act.relu) kernels::relu_backward_cuda<T>(o, dy.data<T>(), in, n, stream);
      if (backward && !act.relu) kernels::gelu_backward_cuda<T>(o, dy.data<T>(), in, n, stream, act.form);
    });
#endif
    return out;
  }
  dispatch_float(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const T* in = x.data<T>();
    if (!backward && act.relu) kernels::relu_forward_cpu<T>(o, in, n);
    if (!backward && !act.relu) kernels::gelu_forward_cpu<T>(o, in, n, act.form);
    if (backward && act.relu) kernels::relu_backward_cpu<T>(o, dy.data<T>(), in, n);
    if (backward && !act.relu) kernels::gelu_backward_cpu<T>(o, dy.data<T>(), in, n, act.form);
  });
  return out;
}

Tensor activation(const Activation& act, const Tensor& x) {
  check_defined(act.name, "x", x);
  Tensor xc = x.contiguous();
  Tensor out = run_activation(act, act.name, xc, Tensor());
  return record(out, act.name, {x}, [act, xc](const Tensor& g, const GradNeeds&) {
    const std::string op = str(act.name, " backward");
    check_same_dtype_device(op.c_str(), {xc, g});
    return std::vector<Tensor>{run_activation(act, op.c_str(), xc, g.contiguous())};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("add", kernels::BinaryOp::add, a, b);
  return record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const GradNeeds& needs) {
    return std::vector<Tensor>{needs[0] ? sum_to_shape(g, sa) : Tensor(), needs[1] ? sum_to_shape(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("sub", kernels::BinaryOp::sub, a, b);
  return record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const GradNeeds& needs) {
    return std::vector<Tensor>{needs[0] ? sum_to_shape(g, sa) : Tensor(),
                               needs[1] ? sum_to_shape(scale(g, -1.0), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("mul", kernels::BinaryOp::mul, a, b);
  return record(out, "mul", {a, b}, [a, b](const Tensor& g, const GradNeeds& needs) {
    return std::vector<Tensor>{needs[0] ? sum_to_shape(mul(g, b), a.shape()) : Tensor(),
                               needs[1] ? sum_to_shape(mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor scale(const Tensor& x, double factor) {
  check_defined("scale", "x", x);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda("scale", x, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::scale_cuda<T>(out.data<T>(), xc.data<T>(), static_cast<float>(factor), x.numel(), stream);
    });
#endif
  } else {
    dispatch_float("scale", x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::scale_cpu<T>(out.data<T>(), xc.data<T>(), static_cast<T>(factor), x.numel());
    });
  }
  return record(out, "scale", {x},
                [factor](const Tensor& g, const GradNeeds&) { return std::vector<Tensor>{scale(g, factor)}; });
}

Tensor gelu(const Tensor& x, GeluForm form) { return activation({"gelu", false, form}, x); }

Tensor relu(const Tensor& x) { return activation({"relu", true, GeluForm::tanh}, x); }

void add_(const Tensor& dst, const Tensor& src) {
  check_same_dtype_device("add_", {dst, src});
  FT_CHECK(dst.shape() == src.shape(), "add_: shapes ", shape_str(dst.shape()), " and ", shape_str(src.shape()),
           " differ");
  FT_CHECK(dst.is_contiguous(), "add_: destination must be contiguous");
  Tensor sc = src.contiguous();
  if (dst.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    dispatch_cuda("add_", dst, [&](auto tag, cudaStream_t stream) {
      using T = decltype(tag);
      kernels::accumulate_cuda<T>(dst.data<T>(), sc.data<T>(), dst.numel(), stream);
    });
#endif
    return;
  }
  dispatch_float("add_", dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::accumulate_cpu<T>(dst.data<T>(), sc.data<T>(), dst.numel());
  });
}

}  // namespace ft
