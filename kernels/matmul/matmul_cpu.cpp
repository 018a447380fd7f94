#include "kernels/matmul/matmul_cpu.h"

namespace ft::kernels {

template <class T>
void gemm_cpu(const GemmShape& s, const T* a, const T* b, T* c, bool accumulate) {
  const int64_t a_row = s.transpose_a ? 1 : s.lda, a_col = s.transpose_a ? s.lda : 1;
#pragma omp parallel for schedule(static) if (s.m * s.n * s.k > 65536)
  for (int64_t i = 0; i < s.m; ++i) {
    T* ci = c + i * s.ldc;
    if (!accumulate)
      for (int64_t j = 0; j < s.n; ++j) ci[j] = T(0);
    if (s.transpose_b) {
      // B is stored [n, k]: each C element is a dot product of two contiguous rows (when A is
      // not transposed).
      for (int64_t j = 0; j < s.n; ++j) {
        const T* bj = b + j * s.ldb;
        T acc = T(0);
        for (int64_t k = 0; k < s.k; ++k) acc += a[i * a_row + k * a_col] * bj[k];
        ci[j] += acc;
      }
    } else {
      // B is stored [k, n]: add a[i, k] * row k of B into row i of C.
      for (int64_t k = 0; k < s.k; ++k) {
        const T aik = a[i * a_row + k * a_col];
        const T* bk = b + k * s.ldb;
        for (int64_t j = 0; j < s.n; ++j) ci[j] += aik * bk[j];
      }
    }
  }
}

template void gemm_cpu<float>(const GemmShape&, const float*, const float*, float*, bool);
template void gemm_cpu<double>(const GemmShape&, const double*, const double*, double*, bool);

}  // namespace ft::kernels
