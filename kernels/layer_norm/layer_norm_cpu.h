// Layer normalisation over the last dimension on the CPU, the reference for the CUDA kernels.
// The forward also writes each row's mean and reciprocal standard deviation, which the
// backward reuses instead of recomputing them (as llm.c's layernorm does).
//
// Forward, per row x of C values:
//   mean = sum_j x[j] / C,   rstd = 1 / sqrt(sum_j (x[j] - mean)^2 / C + eps)   (biased variance)
//   xhat[j] = (x[j] - mean) * rstd,   y[j] = xhat[j] * weight[j] + bias[j]
// Backward, with dxhat[j] = dy[j] * weight[j]: since d xhat[j] / d x[k] =
// rstd * (delta_jk - 1/C - xhat[j] xhat[k] / C),
//   dx[j]      = rstd * (dxhat[j] - mean_k dxhat[k] - xhat[j] * mean_k (dxhat[k] xhat[k]))
//   dweight[j] = sum over rows of dy[j] * xhat[j],   dbias[j] = sum over rows of dy[j].
#pragma once

#include <cstdint>

namespace ft::kernels {

// x, y: rows x cols, contiguous; weight, bias: cols; mean, rstd: rows (outputs).
template <class T>
void layer_norm_forward_cpu(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                            int64_t cols, T eps);

// The residual add fused in front of the forward (GPT-2's x = x + branch; y = layer_norm(x)):
// sum = x + branch, then y, mean and rstd as layer_norm_forward_cpu gives them for sum. All
// row-major rows x cols but weight, bias (cols) and mean, rstd (rows).
template <class T>
void add_layer_norm_forward_cpu(T* sum, T* y, T* mean, T* rstd, const T* x, const T* branch, const T* weight,
                                const T* bias, int64_t rows, int64_t cols, T eps);

// Writes (does not accumulate) dx [rows x cols], dweight and dbias [cols].
template <class T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* mean,
                             const T* rstd, int64_t rows, int64_t cols);

}  // namespace ft::kernels
