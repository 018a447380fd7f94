// add, sub, mul (broadcasting), scale, GELU, and the in-place helpers of the backward pass.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/elementwise/elementwise_cpu.h"

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
  check_cpu(op_name, {a, b});
  Shape shape = broadcast_shapes(op_name, a.shape(), b.shape());
  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_float(op_name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::binary_cpu<T>(op, out.data<T>(), ac.data<T>(), bc.data<T>(), shape,
                           broadcast_strides(a.shape(), shape), broadcast_strides(b.shape(), shape));
  });
  return out;
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
  check_cpu("scale", {x});
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float("scale", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::scale_cpu<T>(out.data<T>(), xc.data<T>(), static_cast<T>(factor), x.numel());
  });
  return record(out, "scale", {x}, [factor](const Tensor& g, const GradNeeds&) {
    return std::vector<Tensor>{scale(g, factor)};
  });
}

Tensor gelu(const Tensor& x) {
  check_defined("gelu", "x", x);
  check_cpu("gelu", {x});
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float("gelu", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::gelu_forward_cpu<T>(out.data<T>(), xc.data<T>(), x.numel());
  });
  return record(out, "gelu", {x}, [xc](const Tensor& g, const GradNeeds&) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
    dispatch_float("gelu backward", xc.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::gelu_backward_cpu<T>(dx.data<T>(), gc.data<T>(), xc.data<T>(), xc.numel());
    });
    return std::vector<Tensor>{dx};
  });
}

void add_(const Tensor& dst, const Tensor& src) {
  check_same_dtype_device("add_", {dst, src});
  check_cpu("add_", {dst, src});
  FT_CHECK(dst.shape() == src.shape(), "add_: shapes ", shape_str(dst.shape()), " and ", shape_str(src.shape()),
           " differ");
  FT_CHECK(dst.is_contiguous(), "add_: destination must be contiguous");
  Tensor sc = src.contiguous();
  dispatch_float("add_", dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::accumulate_cpu<T>(dst.data<T>(), sc.data<T>(), dst.numel());
  });
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  check_cpu("sum_to_shape", {x});
  FT_CHECK(shape.size() <= x.shape().size(), "sum_to_shape: ", shape_str(shape), " has more dimensions than ",
           shape_str(x.shape()));
  Shape padded(x.shape().size() - shape.size(), 1);
  padded.insert(padded.end(), shape.begin(), shape.end());
  for (size_t d = 0; d < padded.size(); ++d)
    FT_CHECK(padded[d] == 1 || padded[d] == x.shape()[d], "sum_to_shape: ", shape_str(shape),
             " does not broadcast to ", shape_str(x.shape()));
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  dispatch_float("sum_to_shape", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::sum_to_shape_cpu<T>(out.data<T>(), xc.data<T>(), xc.shape(), padded);
  });
  return out;
}

}  // namespace ft
