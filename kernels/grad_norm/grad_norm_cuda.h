// The global gradient norm and clipping on the GPU: the launchers of
// kernels/grad_norm/grad_norm.cu, multi-tensor (all of a model's gradients in a few launches).
// The CPU references are sum_squares_cpu (kernels/reduce) and scale_cpu (kernels/elementwise).
//
// The sum of squares is deterministic: each block adds a fixed chunk of one tensor into its
// own fp32 partial, and one block then adds the partials in order, in double.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace ft::kernels {

// A tensor of a multi-tensor launch: numel contiguous elements of the launcher's T.
template <class T>
struct DeviceSpan {
  T* data;
  int64_t numel;
};

// The number of fp32 partials sum_squares_partials_cuda writes for tensors of these sizes.
int64_t sum_squares_partial_count(const std::vector<int64_t>& numels);

// partials[0 .. sum_squares_partial_count) = per-block sums of x^2 over the tensors (T float,
// ft::bfloat16 or ft::half), in the tensors' order.
template <class T>
void sum_squares_partials_cuda(float* partials, const std::vector<DeviceSpan<const T>>& tensors, cudaStream_t stream);

// *total = the sum of partials[0 .. count), added in a fixed order in double.
void sum_partials_cuda(double* total, const float* partials, int64_t count, cudaStream_t stream);

// x *= factor in place, in fp32, for every tensor.
template <class T>
void scale_tensors_cuda(const std::vector<DeviceSpan<T>>& tensors, float factor, cudaStream_t stream);

}  // namespace ft::kernels
