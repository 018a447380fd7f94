// Cross-entropy of logits against integer targets on the GPU: the launchers of
// kernels/cross_entropy/cross_entropy.cu, on raw device pointers and a stream. The math is
// cross_entropy_cpu.h's; logits are T (float, ft::bfloat16 or ft::half), everything else fp32.
//
// Unlike the CPU op, which checks targets on the host before it runs, these kernels never
// leave the device: a target that is neither in [0, vocab) nor ignore_index makes the loss
// NaN (and its row's gradient NaN), which the trainer's non-finite check then reports.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ft::kernels {

// logits: [rows, vocab] contiguous; targets: [rows]. Writes lse[n] (0 on ignored rows),
// row_loss[n] = lse[n] - logits[n, target[n]] (0 on ignored rows), the number of rows not
// ignored into *count, and into *loss their mean loss (0 when every row is ignored). The mean
// adds the rows in a fixed order: the same inputs give the same bits.
template <class T>
void cross_entropy_forward_cuda(float* loss, int32_t* count, float* lse, float* row_loss, const T* logits,
                                const int32_t* targets, int64_t rows, int64_t vocab, int32_t ignore_index,
                                cudaStream_t stream);

// Overwrites dlogits [rows, vocab] with (softmax - onehot) * (*grad_loss) / (*count) on rows
// with a target and 0 on ignored rows; grad_loss and count are device scalars (the upstream
// gradient and the forward's count), so nothing waits for the host.
template <class T>
void cross_entropy_backward_cuda(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                 const float* grad_loss, const int32_t* count, int64_t rows, int64_t vocab,
                                 int32_t ignore_index, cudaStream_t stream);

// The mean of the forward alone: the number of rows not ignored into *count and the mean of
// row_loss over them into *loss (0 when every row is ignored), added in a fixed order.
void cross_entropy_mean_cuda(float* loss, int32_t* count, const float* row_loss, const int32_t* targets, int64_t rows,
                             int32_t ignore_index, cudaStream_t stream);

// The fused step of lm_head_cross_entropy, on a chunk of rows: writes row_loss[n] (0 on ignored
// rows) and, with write_gradient, overwrites logits [rows, vocab] in place with the gradient of
// the summed loss, softmax - onehot (0 on ignored rows); without, the logits are only read.
// Row n starts at logits + n * row_stride (row_stride >= vocab); the elements past vocab (a
// padding that aligns the rows for cuBLAS) are neither read nor written. The mean's 1/count
// and the upstream gradient are left to scale_loss_gradient_cuda.
template <class T>
void cross_entropy_loss_and_grad_cuda(float* row_loss, T* logits, int64_t row_stride, const int32_t* targets,
                                      int64_t rows, int64_t vocab, int32_t ignore_index, bool write_gradient,
                                      cudaStream_t stream);

// out[i] = gradient[i] * (*grad_loss) / (*count) over n elements (0 when *count is 0): a sum's
// fp32 gradient turned into the mean's, times the upstream gradient, in T. Both scalars live on
// the device, so nothing waits for the host.
template <class T>
void scale_loss_gradient_cuda(T* out, const float* gradient, const float* grad_loss, const int32_t* count, int64_t n,
                              cudaStream_t stream);

}  // namespace ft::kernels
