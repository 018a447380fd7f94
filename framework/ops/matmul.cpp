// matmul (batched, with transposes) and linear, on kernels/matmul.
//
// Backward of C = op(A) op(B):  d op(A) = dC op(B)^T  and  d op(B) = op(A)^T dC; a transposed
// input gets the transpose of that. When B is shared by every batch (a weight), its gradient
// sums over the batch, which for an untransposed A is one product over the flattened batch.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/matmul/matmul_cpu.h"

namespace ft {
namespace {

Tensor transpose_last(const Tensor& x) { return transpose(x, -1, -2).contiguous(); }

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_defined("matmul", "a", a);
  check_defined("matmul", "b", b);
  check_same_dtype_device("matmul", {a, b});
  check_cpu("matmul", {a, b});
  FT_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: needs at least 2 dimensions, got a ", shape_str(a.shape()),
           " and b ", shape_str(b.shape()));
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
  dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pa = ac.data<T>();
    const T* pb = bc.data<T>();
    T* pc = out.data<T>();
    for (int64_t i = 0; i < (fold ? 1 : batches); ++i)
      kernels::gemm_cpu<T>(s, pa + i * m * k, pb + (shared_b ? 0 : i * k * n), pc + i * m * n, false);
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Tensor out = matmul_forward(a, b, ta, tb);
  return record(out, "matmul", {a, b}, [a, b, ta, tb](const Tensor& g, const GradNeeds& needs) {
    Tensor da, db;
    if (needs[0]) {
      Tensor d_op_a = matmul(g, b, false, !tb);  // [..., M, K]
      da = ta ? transpose_last(d_op_a) : d_op_a;
    }
    if (needs[1]) {
      Tensor d_op_b;  // [K, N] or [..., K, N]
      if (b.dim() == 2 && !ta) {
        d_op_b = matmul(reshape(a, {-1, a.size(-1)}), reshape(g, {-1, g.size(-1)}), true, false);
      } else {
        d_op_b = matmul(a, g, !ta, false);
        if (b.dim() == 2) d_op_b = sum_to_shape(d_op_b, {d_op_b.size(-2), d_op_b.size(-1)});
      }
      db = tb ? transpose_last(d_op_b) : d_op_b;
    }
    return std::vector<Tensor>{da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined("linear", "x", x);
  check_defined("linear", "weight", weight);
  check_dim("linear", "weight", weight, 2);
  FT_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: x ", shape_str(x.shape()),
           " has last dimension ", (x.dim() ? x.size(-1) : 0), ", expected weight's in-features ", weight.size(1),
           " (weight ", shape_str(weight.shape()), ")");
  if (bias.defined()) check_shape("linear", "bias", bias, {weight.size(0)});
  Tensor x2 = x.dim() == 1 ? reshape(x, {1, x.size(0)}) : x;
  Tensor out = matmul(x2, weight, false, true);
  if (bias.defined()) out = add(out, bias);
  return x.dim() == 1 ? reshape(out, {weight.size(0)}) : out;
}

}  // namespace ft
