// Whole-tensor sums on the CPU, accumulated in double so that fp32 sums of millions of
// elements keep their digits.
#pragma once

#include <cstdint>

namespace ft::kernels {

template <class T>
T sum_cpu(const T* x, int64_t n);

// sum(x^2) in double: the square of the L2 norm (the gradient norm sums these over tensors).
template <class T>
double sum_squares_cpu(const T* x, int64_t n);

}  // namespace ft::kernels
