// mlp: GPT-2's feed-forward block, linear -> GELU (tanh form) -> linear, as one autograd node,
// so that on CUDA the first bias and the GELU ride in the first product's epilogue, the GELU's
// gradient in the backward product that makes the hidden gradient (cuBLASLt's GELU_AUX_BIAS and
// DGELU epilogues, kernels/matmul/matmul_cuda.h), each bias gradient from column_sums_cuda. The CPU
// path composes the CPU kernels in the order linear -> gelu -> linear runs them: the reference.
//
// With x flattened to [N, C] rows (row-major products as in kernels/matmul/matmul_cpu.h):
//   forward   pre = x W1^T + b1 [N, H],  h = gelu(pre),  y = h W2^T + b2 [N, C_out]
//   backward  dW2 = dy^T h,  db2 = colsum(dy),  dpre = (dy W2) * gelu'(pre),  db1 = colsum(dpre),
//             dW1 = dpre^T x,  dx = dpre W1
// The node keeps pre, and h unless recompute_gelu (then the backward recomputes gelu(pre), and
// only when W2's gradient is wanted). Nothing is computed for an input that needs no gradient:
// dpre only when x, W1 or b1 need one.
#include "framework/autograd.h"
#include "framework/ops.h"
#include "framework/ops/checks.h"
#include "kernels/elementwise/elementwise_cpu.h"
#include "kernels/matmul/matmul_cpu.h"
#ifdef FLASHTRAIN_HAS_CUDA
#include "framework/cuda/context.h"
#include "kernels/matmul/matmul_cuda.h"
#endif

namespace ft {
namespace {

enum Input { kX, kFcWeight, kFcBias, kProjWeight, kProjBias };

struct MlpDims {
  int64_t rows, in, hidden, out;
};

// The six products, as GemmShapes (m, n, k, transpose_a, transpose_b, lda, ldb, ldc).
kernels::GemmShape fc_forward(const MlpDims& d) {  // x W1^T
  return {d.rows, d.hidden, d.in, false, true, d.in, d.in, d.hidden};
}
kernels::GemmShape proj_forward(const MlpDims& d) {  // h W2^T
  return {d.rows, d.out, d.hidden, false, true, d.hidden, d.hidden, d.out};
}
kernels::GemmShape proj_weight_grad(const MlpDims& d) {  // dy^T h
  return {d.out, d.hidden, d.rows, true, false, d.out, d.hidden, d.hidden};
}
kernels::GemmShape hidden_grad(const MlpDims& d) {  // dy W2
  return {d.rows, d.hidden, d.out, false, false, d.out, d.hidden, d.hidden};
}
kernels::GemmShape fc_weight_grad(const MlpDims& d) {  // dpre^T x
  return {d.hidden, d.in, d.rows, true, false, d.hidden, d.in, d.in};
}
kernels::GemmShape input_grad(const MlpDims& d) {  // dpre W1
  return {d.rows, d.in, d.hidden, false, false, d.hidden, d.in, d.in};
}

// What the backward reads: contiguous x [N, C] and weights, pre, and h unless recomputed.
struct MlpSaved {
  MlpDims dims;
  Shape x_shape;
  Tensor x, fc_weight, proj_weight, pre, h;
};

template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// ---- CPU: the reference -------------------------------------------------------------------

// c[i, :] += bias over a contiguous [rows, cols] matrix (the add of linear's CPU path).
template <class T>
void add_bias_cpu(T* c, const T* bias, int64_t rows, int64_t cols) {
  kernels::binary_cpu<T>(kernels::BinaryOp::add, c, c, bias, {rows, cols}, {cols, 1}, {0, 1});
}

template <class T>
void column_sums_cpu(T* out, const T* x, int64_t rows, int64_t cols) {
  kernels::sum_to_shape_cpu<T>(out, x, {rows, cols}, {1, cols});
}

template <class T>
void forward_cpu(const MlpDims& d, const T* x, const T* w1, const T* b1, const T* w2, const T* b2, T* pre, T* h, T* y) {
  kernels::gemm_cpu<T>(fc_forward(d), x, w1, pre, false);
  add_bias_cpu(pre, b1, d.rows, d.hidden);
  kernels::gelu_forward_cpu<T>(h, pre, d.rows * d.hidden);
  kernels::gemm_cpu<T>(proj_forward(d), h, w2, y, false);
  add_bias_cpu(y, b2, d.rows, d.out);
}

// Fills the defined tensors of `grads` (in Input order); h is defined when W2's gradient is.
template <class T>
void backward_cpu(const MlpSaved& s, const T* dy, const Tensor& h, const std::vector<Tensor>& grads) {
  const MlpDims& d = s.dims;
  if (grads[kProjWeight].defined())
    kernels::gemm_cpu<T>(proj_weight_grad(d), dy, h.data<T>(), grads[kProjWeight].data<T>(), false);
  if (grads[kProjBias].defined()) column_sums_cpu(grads[kProjBias].data<T>(), dy, d.rows, d.out);
  if (!grads[kX].defined() && !grads[kFcWeight].defined() && !grads[kFcBias].defined()) return;
  Tensor dpre_tensor = Tensor::empty({d.rows, d.hidden}, s.pre.dtype());
  T* dpre = dpre_tensor.data<T>();
  kernels::gemm_cpu<T>(hidden_grad(d), dy, s.proj_weight.data<T>(), dpre, false);
  kernels::gelu_backward_cpu<T>(dpre, dpre, s.pre.data<T>(), d.rows * d.hidden);  // in place, element by element
  if (grads[kFcBias].defined()) column_sums_cpu(grads[kFcBias].data<T>(), dpre, d.rows, d.hidden);
  if (grads[kFcWeight].defined())
    kernels::gemm_cpu<T>(fc_weight_grad(d), dpre, s.x.data<T>(), grads[kFcWeight].data<T>(), false);
  if (grads[kX].defined()) kernels::gemm_cpu<T>(input_grad(d), dpre, s.fc_weight.data<T>(), grads[kX].data<T>(), false);
}

// ---- CUDA: the fused products ---------------------------------------------------------------
#ifdef FLASHTRAIN_HAS_CUDA

template <class T>
void forward_cuda(const cuda::Context& ctx, const MlpDims& d, const T* x, const T* w1, const T* b1, const T* w2,
                  const T* b2, T* pre, T* h, T* y) {
  kernels::gemm_bias_gelu_cuda<T>(ctx, fc_forward(d), x, w1, b1, h, pre);
  kernels::gemm_bias_cuda<T>(ctx, proj_forward(d), h, w2, b2, y);
}

// A linear layer's weight and bias gradients from its output gradient dy [rows, cols] and its
// input (the bias's are dy's column sums).
template <class T>
void weight_and_bias_grads(const cuda::Context& ctx, const kernels::GemmShape& product, const T* dy, const T* input,
                           T* dw, T* db, int64_t rows, int64_t cols) {
  if (dw && db)
    kernels::gemm_bias_grad_cuda<T>(ctx, product, dy, input, dw, db);
  else if (dw)
    kernels::gemm_cuda<T>(ctx, product, {}, dy, input, dw);
  else if (db)
    kernels::column_sums_cuda<T>(ctx, db, dy, rows, cols);
}

// dpre = (dy W2) * gelu'(pre) comes from the DGELU epilogue of its product. The fc bias's
// gradient is dpre's column sums rather than DGELU_BGRAD's, which measured slower on an H200
// (the bias sum over 16K rows inside the dgelu product).
template <class T>
void backward_cuda(const cuda::Context& ctx, const MlpSaved& s, const T* dy, const Tensor& h,
                   const std::vector<Tensor>& grads) {
  const MlpDims& d = s.dims;
  weight_and_bias_grads<T>(ctx, proj_weight_grad(d), dy, data_or_null<T>(h), data_or_null<T>(grads[kProjWeight]),
                           data_or_null<T>(grads[kProjBias]), d.rows, d.out);
  if (!grads[kX].defined() && !grads[kFcWeight].defined() && !grads[kFcBias].defined()) return;
  Tensor dpre = Tensor::empty({d.rows, d.hidden}, s.pre.dtype(), s.pre.device());
  kernels::gemm_dgelu_cuda<T>(ctx, hidden_grad(d), dy, s.proj_weight.data<T>(), s.pre.data<T>(), dpre.data<T>());
  weight_and_bias_grads<T>(ctx, fc_weight_grad(d), dpre.data<T>(), s.x.data<T>(), data_or_null<T>(grads[kFcWeight]),
                           data_or_null<T>(grads[kFcBias]), d.rows, d.hidden);
  if (grads[kX].defined())
    kernels::gemm_cuda<T>(ctx, input_grad(d), {}, dpre.data<T>(), s.fc_weight.data<T>(), grads[kX].data<T>());
}

#endif

// ---- the op -------------------------------------------------------------------------------

MlpDims check_inputs(const Tensor& x, const Tensor& fc_weight, const Tensor& fc_bias, const Tensor& proj_weight,
                     const Tensor& proj_bias) {
  check_defined("mlp", "x", x);
  check_defined("mlp", "fc_weight", fc_weight);
  check_defined("mlp", "fc_bias", fc_bias);
  check_defined("mlp", "proj_weight", proj_weight);
  check_defined("mlp", "proj_bias", proj_bias);
  check_same_dtype_device("mlp", {x, fc_weight, fc_bias, proj_weight, proj_bias});
  check_dim("mlp", "fc_weight", fc_weight, 2);
  check_dim("mlp", "proj_weight", proj_weight, 2);
  const int64_t hidden = fc_weight.size(0), in = fc_weight.size(1), out = proj_weight.size(0);
  FT_CHECK(hidden > 0 && in > 0 && out > 0, "mlp: fc_weight ", shape_str(fc_weight.shape()), " and proj_weight ",
           shape_str(proj_weight.shape()), " must have no zero-sized dimension");
  FT_CHECK(x.dim() >= 1 && x.size(-1) == in, "mlp: x ", shape_str(x.shape()), " has last dimension ",
           (x.dim() ? x.size(-1) : 0), ", expected fc_weight's in-features ", in, " (fc_weight ",
           shape_str(fc_weight.shape()), ")");
  check_shape("mlp", "fc_bias", fc_bias, {hidden});
  check_shape("mlp", "proj_weight", proj_weight, {out, hidden});
  check_shape("mlp", "proj_bias", proj_bias, {out});
  return {x.numel() / in, in, hidden, out};
}

// The gradients `needs` asks for, allocated (undefined where not needed), in Input order.
std::vector<Tensor> empty_grads(const MlpSaved& s, const GradNeeds& needs) {
  const DType dtype = s.x.dtype();
  const Device device = s.x.device();
  const MlpDims& d = s.dims;
  const Shape shapes[] = {s.x_shape, {d.hidden, d.in}, {d.hidden}, {d.out, d.hidden}, {d.out}};
  std::vector<Tensor> grads(needs.size());
  for (size_t i = 0; i < needs.size(); ++i)
    if (needs[i]) grads[i] = Tensor::empty(shapes[i], dtype, device);
  return grads;
}

}  // namespace

Tensor mlp(const Tensor& x, const Tensor& fc_weight, const Tensor& fc_bias, const Tensor& proj_weight,
           const Tensor& proj_bias, const MlpOptions& options) {
  const MlpDims d = check_inputs(x, fc_weight, fc_bias, proj_weight, proj_bias);
  MlpSaved s{d, x.shape(), x.contiguous(), fc_weight.contiguous(), proj_weight.contiguous(), Tensor(), Tensor()};
  const Tensor b1 = fc_bias.contiguous(), b2 = proj_bias.contiguous();
  const DType dtype = x.dtype();
  const Device device = x.device();
  s.pre = Tensor::empty({d.rows, d.hidden}, dtype, device);
  Tensor h = Tensor::empty({d.rows, d.hidden}, dtype, device);
  Shape out_shape = x.shape();
  out_shape.back() = d.out;
  Tensor y = Tensor::empty(out_shape, dtype, device);
  if (device.is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
    cuda::DeviceGuard guard(device.index);
    dispatch_cuda_float("mlp", dtype, [&](auto tag) {
      using T = decltype(tag);
      forward_cuda<T>(cuda::context(device.index), d, s.x.data<T>(), s.fc_weight.data<T>(), b1.data<T>(),
                      s.proj_weight.data<T>(), b2.data<T>(), s.pre.data<T>(), h.data<T>(), y.data<T>());
    });
#endif
  } else {
    dispatch_float("mlp", dtype, [&](auto tag) {
      using T = decltype(tag);
      forward_cpu<T>(d, s.x.data<T>(), s.fc_weight.data<T>(), b1.data<T>(), s.proj_weight.data<T>(), b2.data<T>(),
                     s.pre.data<T>(), h.data<T>(), y.data<T>());
    });
  }
  if (!options.recompute_gelu) s.h = h;
  return record(y, "mlp", {x, fc_weight, fc_bias, proj_weight, proj_bias},
                [s](const Tensor& g, const GradNeeds& needs) {
                  check_same_dtype_device("mlp backward", {s.x, g});
                  std::vector<Tensor> grads = empty_grads(s, needs);
                  const Tensor dy = g.contiguous();
                  // Recomputing gelu(pre) (framework/ops/elementwise.cpp) is an elementwise pass.
                  const Tensor h = !needs[kProjWeight] ? Tensor() : s.h.defined() ? s.h : gelu(s.pre);
                  if (dy.device().is_cuda()) {
#ifdef FLASHTRAIN_HAS_CUDA
                    cuda::DeviceGuard guard(dy.device().index);
                    dispatch_cuda_float("mlp backward", dy.dtype(), [&](auto tag) {
                      using T = decltype(tag);
                      backward_cuda<T>(cuda::context(dy.device().index), s, dy.data<T>(), h, grads);
                    });
#endif
                  } else {
                    dispatch_float("mlp backward", dy.dtype(), [&](auto tag) {
                      using T = decltype(tag);
                      backward_cpu<T>(s, dy.data<T>(), h, grads);
                    });
                  }
                  return grads;
                });
}

}  // namespace ft
