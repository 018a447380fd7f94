#include "kernels/rotary/rotary_cpu.h"

#include <cmath>
#include <vector>

namespace ft::kernels {

template <class T>
void rotary_cpu(T* out, const T* x, const int32_t* positions, int64_t batch, int64_t heads, int64_t seq_len,
                int64_t head_dim, double base, bool inverse) {
  const int64_t half = head_dim / 2;
  std::vector<double> frequency(half);  // base^(-2i/D)
  for (int64_t i = 0; i < half; ++i) frequency[i] = std::pow(base, -2.0 * static_cast<double>(i) / head_dim);
  const double direction = inverse ? -1.0 : 1.0;
  const int64_t rows = batch * heads * seq_len;
#pragma omp parallel for schedule(static) if (rows * head_dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / (heads * seq_len), t = r % seq_len;
    const double position = positions ? positions[b * seq_len + t] : static_cast<double>(t);
    const T* xr = x + r * head_dim;
    T* outr = out + r * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = direction * position * frequency[i];
      const T cos_theta = static_cast<T>(std::cos(angle)), sin_theta = static_cast<T>(std::sin(angle));
      const T first = xr[i], second = xr[i + half];
      outr[i] = first * cos_theta - second * sin_theta;
      outr[i + half] = second * cos_theta + first * sin_theta;
    }
  }
}

#define FT_INSTANTIATE(T)                                                                                  \
  template void rotary_cpu<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, double, bool);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::kernels
