// Softmax over the last dimension on CUDA: the launchers of kernels/softmax/softmax.cu, the
// softmax op's and the masked softmax of attention's "math" form. Same results as
// softmax_cpu.h: entries of -inf (or masked) get probability 0, a row with none left is zeros.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "framework/dtype.h"

namespace ft::kernels {

// Attention's mask, applied inside the softmax (kernels/attention/attention_cpu.h defines it):
// the rows are the (batch, head, query) of [batch, heads, T, T] scores and the columns their
// T keys. The default mask hides nothing: a plain softmax.
struct KeyMask {
  bool causal = false;                   // query i sees keys j <= i
  const int32_t* segment_ids = nullptr;  // [batch, T] on the device: ids must be equal and >= 0
  int64_t heads = 1;
};

// y = softmax(x) over each row of a contiguous [rows, cols] matrix, in fp32. (In, Out) is
// (T, T) for T in {float, bfloat16, half}, or (float, T) for attention's fp32 scores.
template <class In, class Out>
void softmax_forward_cuda(Out* y, const In* x, int64_t rows, int64_t cols, const KeyMask& mask, cudaStream_t stream);

// dx = scale * y * (dy - rowsum(dy * y)), y the forward's output. (Grad, T) is (T, T), or
// (float, T) for attention's fp32 dP; scale folds in attention's score scale.
template <class Grad, class T>
void softmax_backward_cuda(T* dx, const Grad* dy, const T* y, int64_t rows, int64_t cols, float scale,
                           cudaStream_t stream);

}  // namespace ft::kernels
