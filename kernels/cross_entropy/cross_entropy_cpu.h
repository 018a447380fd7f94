// Cross-entropy of logits against integer targets on the CPU, fused: each row's log-softmax
// and loss come from one visit to the row (its max, then the sum of exp(x - max)), without
// ever forming the softmax; the backward rebuilds it from the saved log-sum-exp. Rows whose
// target is ignore_index contribute nothing.
//   forward:  lse[n] = max_v x[n, v] + log sum_v exp(x[n, v] - max_v x[n, v])
//             loss[n] = lse[n] - x[n, target[n]]
//   backward: dx[n, v] = scale * (exp(x[n, v] - lse[n]) - [v == target[n]]), 0 on ignored rows,
//             where scale = dL/dloss / (number of rows not ignored) for the mean.
// Subtracting the max keeps exp() at most 1, so logits of 1000 stay finite. Targets must be
// validated by the caller (in [0, vocab) or ignore_index).
#pragma once

#include <cstdint>

namespace ft::kernels {

// logits: [rows, vocab]. Writes lse[n] for every row (0 on ignored rows) and returns the sum
// of the losses of the rows not ignored, added in row order (deterministic), in double.
template <class T>
double cross_entropy_forward_cpu(T* lse, const T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                                 int32_t ignore_index);

// Overwrites dlogits ([rows, vocab]) from the forward's lse.
template <class T>
void cross_entropy_backward_cpu(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int64_t rows,
                                int64_t vocab, int32_t ignore_index, T scale);

// The fused step of lm_head_cross_entropy on a chunk of rows (the reference of
// cross_entropy_loss_and_grad_cuda): returns the sum of the losses of the rows not ignored, in
// row order, in double, and with write_gradient overwrites logits [rows, vocab] in place with
// softmax - onehot (0 on ignored rows), the gradient of that sum before the mean's 1/count.
template <class T>
double cross_entropy_loss_and_grad_cpu(T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                                       int32_t ignore_index, bool write_gradient);

}  // namespace ft::kernels
