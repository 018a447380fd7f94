// Layer normalisation on the GPU: the launchers of kernels/layer_norm/layer_norm.cu, on raw
// device pointers and a stream. The math is layer_norm_cpu.h's; the kernels read and write T
// (float, ft::bfloat16 or ft::half), compute in fp32 and keep each row's mean and reciprocal
// standard deviation in fp32 whatever T is.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ft::kernels {

// x, y: rows x cols, contiguous; weight, bias: cols; mean, rstd: rows (fp32 outputs).
template <class T>
void layer_norm_forward_cuda(T* y, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                             int64_t cols, float eps, cudaStream_t stream);

// The residual add fused in front of the forward: sum = x + branch (rounded to T, as add gives
// it), then y = layer_norm(sum) with its mean and rstd, reading x and branch once. All rows x
// cols, contiguous, but weight, bias (cols) and mean, rstd (rows, fp32 outputs).
template <class T>
void add_layer_norm_forward_cuda(T* sum, T* y, float* mean, float* rstd, const T* x, const T* branch, const T* weight,
                                 const T* bias, int64_t rows, int64_t cols, float eps, cudaStream_t stream);

// The fp32 scratch layer_norm_backward_cuda needs for the per-block partial sums of dweight
// and dbias (2 * row chunks * cols floats).
int64_t layer_norm_backward_scratch_floats(int64_t rows, int64_t cols);

// Writes (does not accumulate) dx [rows x cols] unless it is null, and dweight and dbias [cols]
// unless both are null (then `scratch` may be null too). The parameter gradients are summed
// over rows in a fixed order: the same inputs give the same bits on every run.
template <class T>
void layer_norm_backward_cuda(T* dx, T* dweight, T* dbias, float* scratch, const T* dy, const T* x, const T* weight,
                              const float* mean, const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace ft::kernels
