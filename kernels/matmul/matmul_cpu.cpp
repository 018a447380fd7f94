#include "kernels/matmul/matmul_cpu.h"

#include <cblas.h>

#include <algorithm>

namespace ft::kernels {
namespace {

// OpenBLAS's GEMM, one overload per precision; row-major like the rest of flashtrain.
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, const GemmShape& s, const float* a, const float* b, float beta,
               float* c) {
  cblas_sgemm(CblasRowMajor, ta, tb, s.m, s.n, s.k, 1.0f, a, s.lda, b, s.ldb, beta, c, s.ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, const GemmShape& s, const double* a, const double* b,
               double beta, double* c) {
  cblas_dgemm(CblasRowMajor, ta, tb, s.m, s.n, s.k, 1.0, a, s.lda, b, s.ldb, beta, c, s.ldc);
}

}  // namespace

template <class T>
void gemm_cpu(const GemmShape& s, const T* a, const T* b, T* c, bool accumulate) {
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {  // an empty sum; BLAS would reject the zero leading dimensions
    if (!accumulate)
      for (int64_t i = 0; i < s.m; ++i) std::fill(c + i * s.ldc, c + i * s.ldc + s.n, T(0));
    return;
  }
  blas_gemm(s.transpose_a ? CblasTrans : CblasNoTrans, s.transpose_b ? CblasTrans : CblasNoTrans, s, a, b,
            accumulate ? T(1) : T(0), c);
}

template void gemm_cpu<float>(const GemmShape&, const float*, const float*, float*, bool);
template void gemm_cpu<double>(const GemmShape&, const double*, const double*, double*, bool);

}  // namespace ft::kernels
