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

}  // namespace ft::kernels
