#include "kernels/layer_norm/layer_norm_cpu.h"

#include <cmath>

namespace ft::kernels {

namespace {

// One row of the forward: y = layer_norm(x), with the row's mean and rstd.
template <class T>
void normalise_row(T* y, T& mean, T& rstd, const T* x, const T* weight, const T* bias, int64_t cols, T eps) {
  T sum = T(0);
  for (int64_t j = 0; j < cols; ++j) sum += x[j];
  const T m = sum / T(cols);
  T squares = T(0);  // two passes: the variance of x - mean loses no digits to cancellation
  for (int64_t j = 0; j < cols; ++j) squares += (x[j] - m) * (x[j] - m);
  const T s = T(1) / std::sqrt(squares / T(cols) + eps);
  for (int64_t j = 0; j < cols; ++j) y[j] = (x[j] - m) * s * weight[j] + bias[j];
  mean = m;
  rstd = s;
}

}  // namespace

template <class T>
void layer_norm_forward_cpu(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                            int64_t cols, T eps) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r)
    normalise_row(y + r * cols, mean[r], rstd[r], x + r * cols, weight, bias, cols, eps);
}

template <class T>
void add_layer_norm_forward_cpu(T* sum, T* y, T* mean, T* rstd, const T* x, const T* branch, const T* weight,
                                const T* bias, int64_t rows, int64_t cols, T eps) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    T* sum_row = sum + r * cols;
    for (int64_t j = 0; j < cols; ++j) sum_row[j] = x[r * cols + j] + branch[r * cols + j];
    normalise_row(y + r * cols, mean[r], rstd[r], sum_row, weight, bias, cols, eps);
  }
}

template <class T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* mean,
                             const T* rstd, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    T mean_dxhat = T(0), mean_dxhat_xhat = T(0);
    for (int64_t j = 0; j < cols; ++j) {
      const T xhat = (xr[j] - mean[r]) * rstd[r];
      const T dxhat = dyr[j] * weight[j];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += dxhat * xhat;
    }
    mean_dxhat /= T(cols);
    mean_dxhat_xhat /= T(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const T xhat = (xr[j] - mean[r]) * rstd[r];
      dxr[j] = rstd[r] * (dyr[j] * weight[j] - mean_dxhat - xhat * mean_dxhat_xhat);
    }
  }
  // The parameter gradients sum over rows; row-outer order keeps every read contiguous.
  for (int64_t j = 0; j < cols; ++j) dweight[j] = dbias[j] = T(0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      dweight[j] += dyr[j] * (xr[j] - mean[r]) * rstd[r];
      dbias[j] += dyr[j];
    }
  }
}

#define FT_INSTANTIATE(T)                                                                                         \
  template void layer_norm_forward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, T);         \
  template void add_layer_norm_forward_cpu<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,    \
                                              int64_t, T);                                                        \
  template void layer_norm_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                           int64_t);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
