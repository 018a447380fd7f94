// Softmax over the last dimension on the CPU: the op's kernels, and the row softmax that the
// attention reference reuses for its probabilities.
//
// Forward, per row:  y[j] = exp(x[j] - m) / sum_k exp(x[k] - m),  m = max_k x[k]
// (subtracting the row max keeps exp() from overflowing and does not change the result).
// Backward, per row: dx[j] = y[j] * (dy[j] - sum_k dy[k] y[k]).
// Entries of -inf get probability 0 and a row that is all -inf gives all zeros, not NaN: that
// is how attention masks keys, and how a query that sees no key outputs zero.
#pragma once

#include <cstdint>

namespace ft::kernels {

// rows x cols, contiguous. y may be x (in place).
template <class T>
void softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols);

// rows x cols, contiguous; y is the forward's output. dx may be dy (in place).
template <class T>
void softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);

}  // namespace ft::kernels
