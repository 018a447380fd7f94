// Matrix product on the CPU, the reference for cuBLAS(Lt) on the GPU. Row-major:
//   C[i, j] (+)= sum_k op(A)[i, k] * op(B)[k, j]
// where op(A)[i, k] is A[i * lda + k], or A[k * lda + i] when A is transposed; likewise B.
// It calls OpenBLAS (its OpenMP build, so it shares flashtrain's thread pool): a blocked,
// vectorised GEMM runs 30-60x faster than plain loops, which is what makes CPU training of even
// a tiny GPT-2 with its 50257-word output layer practical. The tests check it against the plain
// triple loop (tests/test_matmul.cpp).
#pragma once

#include <cstdint>

namespace ft::kernels {

struct GemmShape {
  int64_t m, n, k;
  bool transpose_a, transpose_b;
  int64_t lda, ldb, ldc;
};

// C = op(A) op(B), overwriting C (accumulate = false) or adding to it.
template <class T>
void gemm_cpu(const GemmShape& s, const T* a, const T* b, T* c, bool accumulate);

}  // namespace ft::kernels
