#include "kernels/reduce/reduce_cpu.h"

namespace ft::kernels {

template <class T>
T sum_cpu(const T* x, int64_t n) {
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) total += x[i];
  return static_cast<T>(total);
}

template <class T>
double sum_squares_cpu(const T* x, int64_t n) {
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

template double sum_squares_cpu<float>(const float*, int64_t);
template double sum_squares_cpu<double>(const double*, int64_t);
template float sum_cpu<float>(const float*, int64_t);
template double sum_cpu<double>(const double*, int64_t);

}  // namespace ft::kernels
