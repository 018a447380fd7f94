// Whole-tensor sum on the CPU, accumulated in double so that fp32 sums of millions of
// elements keep their digits.
#pragma once

#include <cstdint>

namespace ft::kernels {

template <class T>
T sum_cpu(const T* x, int64_t n);

}  // namespace ft::kernels
