#include "kernels/softmax/softmax_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ft::kernels {
namespace {

template <class T>
void softmax_row(T* y, const T* x, int64_t cols) {
  T max = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < cols; ++j) max = std::max(max, x[j]);
  if (max == -std::numeric_limits<T>::infinity()) {  // every entry masked: no probability mass
    for (int64_t j = 0; j < cols; ++j) y[j] = T(0);
    return;
  }
  T total = T(0);
  for (int64_t j = 0; j < cols; ++j) {
    y[j] = std::exp(x[j] - max);
    total += y[j];
  }
  const T inv_total = T(1) / total;
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv_total;
}

template <class T>
void softmax_backward_row(T* dx, const T* dy, const T* y, int64_t cols) {
  T dot = T(0);
  for (int64_t j = 0; j < cols; ++j) dot += dy[j] * y[j];
  for (int64_t j = 0; j < cols; ++j) dx[j] = y[j] * (dy[j] - dot);
}

}  // namespace

template <class T>
void softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) softmax_row(y + r * cols, x + r * cols, cols);
}

template <class T>
void softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) softmax_backward_row(dx + r * cols, dy + r * cols, y + r * cols, cols);
}

#define FT_INSTANTIATE(T)                                                  \
  template void softmax_forward_cpu<T>(T*, const T*, int64_t, int64_t); \
  template void softmax_backward_cpu<T>(T*, const T*, const T*, int64_t, int64_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
