// matmul (batched, with transposes) and linear, on kernels/matmul: OpenBLAS on the CPU,
// cuBLASLt on CUDA.
//
// Backward of C = op(A) op(B):  d op(A) = dC op(B)^T  and  d op(B) = op(A)^T dC, each computed
// directly in the layout its input is stored in (dA = op(B) dC^T when A is transposed, dB =
// dC^T op(A) when B is), so no gradient needs a transposing copy. When B is shared by every
// batch (a weight), its gradient sums over the batch: one product over the batch folded into
// the rows. On CUDA, linear is one node whose forward adds the bias in cuBLASLt's epilogue and
// whose backward takes the bias gradient as the output gradient's column sums
// (kernels/matmul/matmul_cuda.h).
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/matmul/matmul_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/matmul/matmul_cuda.h"
#endif

namespace ft {
namespace {

Tensor transpose_last(const Tensor& x) { return transpose(x, -1, -2).contiguous(); }

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_defined("matmul", "a", a);
  check_defined("matmul", "b", b);
  check_same_dtype_device("matmul", {a, b});
  FT_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: needs at least 2 dimensions, got a ", shape_str(a.shape()), " and b ",
           shape_str(b.shape()));
  const int64_t m = ta ? a.size(-1) : a.size(-2), k = ta ? a.size(-2) : a.size(-1);
  const int64_t kb = tb ? b.size(-1) : b.size(-2), n = tb ? b.size(-2) : b.size(-1);
  FT_CHECK(k == kb, "matmul: inner dimensions differ: a ", shape_str(a.shape()), (ta ? " (transposed)" : ""),
           " has K=", k, ", b ", shape_str(b.shape()), (tb ? " (transposed)" : ""), " has K=", kb);
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  const bool shared_b = b.dim() == 2;
  FT_CHECK(shared_b || batch == b_batch, "matmul: batch dimensions differ: a ", shape_str(a.shape()), " and b ",
           shape_str(b.shape()), " (expected equal batches, or a 2-D b)");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);

  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  const int64_t batches = shape_numel(batch);
  // With a shared B and an untransposed A, the batch folds into M: one larger product.
  const bool fold = shared_b && !ta;
  kernels::GemmShape s{fold ? m * batches : m, n, k, ta, tb, a.size(-1), b.size(-1), n};
  if (a.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(a.device().index);
    const kernels::GemmBatch gemm_batch{fold ? 1 : batches, m * k, shared_b ? 0 : k * n, m * n};
    dispatch_cuda_float("matmul", a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::gemm_cuda<T>(cuda::context(a.device().index), s, gemm_batch, ac.data<T>(), bc.data<T>(), out.data<T>());
    });
#endif
  } else {
    dispatch_float("matmul", a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* pa = ac.data<T>();
      const T* pb = bc.data<T>();
      T* pc = out.data<T>();
      for (int64_t i = 0; i < (fold ? 1 : batches); ++i)
        kernels::gemm_cpu<T>(s, pa + i * m * k, pb + (shared_b ? 0 : i * k * n), pc + i * m * n, false);
    });
  }
  return out;
}

// dA = dC op(B)^T, or op(B) dC^T for a transposed A.
Tensor matmul_grad_a(const Tensor& g, const Tensor& b, bool ta, bool tb) {
  if (!ta) return matmul(g, b, false, !tb);
  if (b.dim() == g.dim()) return matmul(b, g, tb, true);
  return transpose_last(matmul(g, b, false, !tb));  // a shared B cannot be the batched product's left side
}

// dB = op(A)^T dC, or dC^T op(A) for a transposed B; a shared B sums over the batch.
Tensor matmul_grad_b(const Tensor& g, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  if (b.dim() == 2 && a.dim() > 2) {
    Tensor a_rows = reshape(ta ? transpose_last(a) : a, {-1, ta ? a.size(-2) : a.size(-1)});  // op(A), [batch*M, K]
    Tensor g_rows = reshape(g, {-1, g.size(-1)});                                             // [batch*M, N]
    return tb ? matmul(g_rows, a_rows, true, false) : matmul(a_rows, g_rows, true, false);
  }
  return tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false);
}

#ifdef FLASHTRAIN_HAS_CUDA
// linear on CUDA: x [rows, in] (flattened), weight [out, in], bias [out] or undefined.
Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_same_dtype_device("linear", {x, weight, bias});
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  FT_CHECK(in > 0 || !bias.defined(), "linear: weight ", shape_str(weight.shape()),
           " has no in-features, which cuda supports only without a bias");
  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.defined() ? bias.contiguous() : Tensor();
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  const int device = x.device().index;
  cuda::DeviceGuard guard(device);
  const kernels::GemmShape forward{rows, out_features, in, false, true, in, in, out_features};  // x W^T
  dispatch_cuda_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (bc.defined())
      kernels::gemm_bias_cuda<T>(cuda::context(device), forward, xc.data<T>(), wc.data<T>(), bc.data<T>(),
                                 out.data<T>());
    else
      kernels::gemm_cuda<T>(cuda::context(device), forward, {}, xc.data<T>(), wc.data<T>(), out.data<T>());
  });
  return record(
      out, "linear", {x, weight, bias}, [xc, wc, rows, in, out_features](const Tensor& g, const GradNeeds& needs) {
        cuda::DeviceGuard guard(xc.device().index);
        const cuda::Context& ctx = cuda::context(xc.device().index);
        Tensor gc = g.contiguous();
        Tensor dx = needs[0] ? Tensor::empty(xc.shape(), xc.dtype(), xc.device()) : Tensor();
        Tensor dw = needs[1] ? Tensor::empty(wc.shape(), wc.dtype(), wc.device()) : Tensor();
        Tensor db = needs[2] ? Tensor::empty({out_features}, wc.dtype(), wc.device()) : Tensor();
        const kernels::GemmShape input_grad{rows, in, out_features, false, false, out_features, in, in};  // dY W
        const kernels::GemmShape weight_grad{out_features, in, rows, true, false, out_features, in, in};  // dY^T x
        dispatch_cuda_float("linear backward", xc.dtype(), [&](auto tag) {
          using T = decltype(tag);
          if (dx.defined()) kernels::gemm_cuda<T>(ctx, input_grad, {}, gc.data<T>(), wc.data<T>(), dx.data<T>());
          if (dw.defined() && db.defined())
            kernels::gemm_bias_grad_cuda<T>(ctx, weight_grad, gc.data<T>(), xc.data<T>(), dw.data<T>(), db.data<T>());
          else if (dw.defined())
            kernels::gemm_cuda<T>(ctx, weight_grad, {}, gc.data<T>(), xc.data<T>(), dw.data<T>());
          else if (db.defined())
            kernels::column_sums_cuda<T>(ctx, db.data<T>(), gc.data<T>(), rows, out_features);
        });
        return std::vector<Tensor>{dx, dw, db};
      });
}
#endif

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Tensor out = matmul_forward(a, b, ta, tb);
  return record(out, "matmul", {a, b}, [a, b, ta, tb](const Tensor& g, const GradNeeds& needs) {
    return std::vector<Tensor>{needs[0] ? matmul_grad_a(g, b, ta, tb) : Tensor(),
                               needs[1] ? matmul_grad_b(g, a, b, ta, tb) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined("linear", "x", x);
  check_defined("linear", "weight", weight);
  check_dim("linear", "weight", weight, 2);
  FT_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: x ", shape_str(x.shape()), " has last dimension ",
           (x.dim() ? x.size(-1) : 0), ", expected weight's in-features ", weight.size(1), " (weight ",
           shape_str(weight.shape()), ")");
  if (bias.defined()) check_shape("linear", "bias", bias, {weight.size(0)});
  Tensor x2 = x.dim() == 1 ? reshape(x, {1, x.size(0)}) : x;
  Tensor out;
  if (x.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    out = linear_cuda(x2, weight, bias);
#endif
  } else {
    out = matmul(x2, weight, false, true);
    if (bias.defined()) out = add(out, bias);
  }
  return x.dim() == 1 ? reshape(out, {weight.size(0)}) : out;
}

}  // namespace ft
