// Elementwise ops on the GPU: the launchers of kernels/elementwise/elementwise.cu, on raw device
// pointers and a stream. The math is that of the CPU references in elementwise_cpu.h, computed
// in fp32 whatever T (float, ft::bfloat16, ft::half) holds. n == 0 launches nothing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/elementwise/elementwise_cpu.h"

namespace ft::kernels {

// Dimensions a broadcast binary op handles after merging the ones that are contiguous in both
// inputs (a broadcast of ranks up to 8 always fits).
constexpr int kMaxBroadcastDims = 8;

// out (contiguous, shape `shape`) = a op b, a and b read through strides (in elements, 0 where
// broadcast) as in binary_cpu.
template <class T>
void binary_cuda(BinaryOp op, T* out, const T* a, const T* b, const std::vector<int64_t>& shape,
                 const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_strides, cudaStream_t stream);

template <class T>
void scale_cuda(T* out, const T* x, float factor, int64_t n, cudaStream_t stream);

// out += x, n elements.
template <class T>
void accumulate_cuda(T* out, const T* x, int64_t n, cudaStream_t stream);

// GELU (tanh or erf form) and ReLU, forward and backward (formulas in elementwise_cpu.h).
template <class T>
void gelu_forward_cuda(T* y, const T* x, int64_t n, cudaStream_t stream, GeluForm form = GeluForm::tanh);
template <class T>
void gelu_backward_cuda(T* dx, const T* dy, const T* x, int64_t n, cudaStream_t stream, GeluForm form = GeluForm::tanh);
template <class T>
void relu_forward_cuda(T* y, const T* x, int64_t n, cudaStream_t stream);
template <class T>
void relu_backward_cuda(T* dx, const T* dy, const T* x, int64_t n, cudaStream_t stream);

}  // namespace ft::kernels
