#include "kernels/cross_entropy/cross_entropy_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ft::kernels {
namespace {

// log sum_v exp(x[v]), with the exponentials summed in double.
template <class T>
double log_sum_exp(const T* x, int64_t n) {
  const double max = static_cast<double>(*std::max_element(x, x + n));
  double sum = 0.0;
  for (int64_t v = 0; v < n; ++v) sum += std::exp(static_cast<double>(x[v]) - max);
  return max + std::log(sum);
}

}  // namespace

template <class T>
double cross_entropy_forward_cpu(T* lse, const T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                                 int32_t ignore_index) {
  std::vector<double> row_loss(rows, 0.0);
#pragma omp parallel for schedule(static) if (rows * vocab > 32768)
  for (int64_t n = 0; n < rows; ++n) {
    lse[n] = T(0);
    if (targets[n] == ignore_index) continue;
    const T* x = logits + n * vocab;
    const double row_lse = log_sum_exp(x, vocab);
    lse[n] = static_cast<T>(row_lse);
    row_loss[n] = row_lse - static_cast<double>(x[targets[n]]);
  }
  double total = 0.0;
  for (double loss : row_loss) total += loss;
  return total;
}

template <class T>
void cross_entropy_backward_cpu(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int64_t rows,
                                int64_t vocab, int32_t ignore_index, T scale) {
#pragma omp parallel for schedule(static) if (rows * vocab > 32768)
  for (int64_t n = 0; n < rows; ++n) {
    T* dx = dlogits + n * vocab;
    const int32_t target = targets[n];
    if (target == ignore_index) {
      std::fill_n(dx, vocab, T(0));
      continue;
    }
    const T* x = logits + n * vocab;
    for (int64_t v = 0; v < vocab; ++v) dx[v] = scale * std::exp(x[v] - lse[n]);
    dx[target] -= scale;
  }
}

template <class T>
double cross_entropy_loss_and_grad_cpu(T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                                       int32_t ignore_index, bool write_gradient) {
  std::vector<double> row_loss(rows, 0.0);
#pragma omp parallel for schedule(static) if (rows * vocab > 32768)
  for (int64_t n = 0; n < rows; ++n) {
    T* x = logits + n * vocab;
    const int32_t target = targets[n];
    if (target == ignore_index) {
      if (write_gradient) std::fill_n(x, vocab, T(0));
      continue;
    }
    const double row_lse = log_sum_exp(x, vocab);
    row_loss[n] = row_lse - static_cast<double>(x[target]);
    if (!write_gradient) continue;
    for (int64_t v = 0; v < vocab; ++v) x[v] = static_cast<T>(std::exp(static_cast<double>(x[v]) - row_lse));
    x[target] -= T(1);
  }
  double total = 0.0;
  for (double loss : row_loss) total += loss;
  return total;
}

#define FT_INSTANTIATE(T)                                                                                            \
  template double cross_entropy_forward_cpu<T>(T*, const T*, const int32_t*, int64_t, int64_t, int32_t);             \
  template void cross_entropy_backward_cpu<T>(T*, const T*, const T*, const int32_t*, int64_t, int64_t, int32_t, T); \
  template double cross_entropy_loss_and_grad_cpu<T>(T*, const int32_t*, int64_t, int64_t, int32_t, bool);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
