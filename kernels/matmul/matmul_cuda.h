// Matrix products on CUDA: the launchers of kernels/matmul/matmul.cu, through cuBLAS and
// cuBLASLt on the device's context (handles, stream, workspace). Shapes are row-major, described exactly
// as for the CPU reference (GemmShape in matmul_cpu.h); a batch of products adds the strides in
// elements between consecutive A, B and C matrices, 0 meaning one matrix shared by every batch.
// Products accumulate in fp32 whatever T is; f32 products use TF32 tensor cores when
// cuda::allow_tf32() (framework/cuda/matmul_settings.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "framework/cuda/context.h"
#include "framework/dtype.h"
#include "kernels/matmul/matmul_cpu.h"

namespace ft::kernels {

struct GemmBatch {
  int64_t count = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// C[i] = alpha op(A[i]) op(B[i]) for i < batch.count, overwriting C (with k = 0, C must be
// contiguous and becomes zeros), or adding to it with `accumulate` (C += ..., as gemm_cpu: an
// fp32 C then sums products over several calls without rounding to T in between). T is float,
// bfloat16 or half; Out is T, or float for a 16-bit T (fp32 outputs, as attention's scores).
template <class T, class Out = T>
void gemm_cuda(const cuda::Context& ctx, const GemmShape& s, const GemmBatch& batch, const T* a, const T* b, Out* c,
               float alpha = 1.0f, bool accumulate = false);

// C = op(A) op(B) + bias, bias [n] added to every row: in cuBLASLt's epilogue where it offers
// an algorithm, else a plain product and a kernel adding the bias (k > 0).
template <class T>
void gemm_bias_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* bias, T* c);

// A linear layer's weight and bias gradients: C = A^T op(B) (s.transpose_a must be set: A is
// stored [k, m]), and bias_grad[i] = sum_k A[k, i], the column sums of A (column_sums_cuda).
template <class T>
void gemm_bias_grad_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, T* c, T* bias_grad);

// The first layer of a GELU MLP: pre = op(A) op(B) + bias and h = gelu(pre) (tanh form), both
// contiguous [m, n] (s.ldc == s.n), k > 0. One product with cuBLASLt's GELU_AUX_BIAS epilogue
// (h is its output, pre its aux) where it offers an algorithm and n is a multiple of 8 (its
// rule for the aux leading dimension); else gemm_bias_cuda into pre and gelu_forward_cuda.
template <class T>
void gemm_bias_gelu_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* bias, T* h,
                         T* pre);

// The backward through that GELU: grad_pre = (op(A) op(B)) * gelu'(pre) over a contiguous
// [m, n]. One product with cuBLASLt's DGELU epilogue reading pre as its aux; else gemm_cuda and
// gelu_backward_cuda. (The bias gradient is left to column_sums_cuda: DGELU_BGRAD measured
// slower on an H200.)
template <class T>
void gemm_dgelu_cuda(const cuda::Context& ctx, const GemmShape& s, const T* a, const T* b, const T* pre, T* grad_pre);

// Test hooks. Whether products may use cuBLASLt's epilogues at all (default true; false forces
// every fallback above, so a suite can hold the two paths to the same numbers), and how many
// epilogue products have fallen back since the start (for whatever reason), so a suite can see
// which path a call took.
void set_cublaslt_epilogues_enabled(bool enabled);
int64_t cublaslt_epilogue_fallbacks();

// out[j] = sum_i x[i, j] over a contiguous [rows, cols] matrix, accumulated in fp32 in a fixed
// order (the same bits on every run): a bias gradient. rows may be 0 (out becomes zeros). Uses
// ctx.workspace for its partial sums.
template <class T>
void column_sums_cuda(const cuda::Context& ctx, T* out, const T* x, int64_t rows, int64_t cols);

}  // namespace ft::kernels
