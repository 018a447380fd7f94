#include "kernels/dropout/dropout_cpu.h"

#include <algorithm>

#include "kernels/random/philox.h"

namespace ft::kernels {

template <class T>
void dropout_cpu(T* out, const T* in, int64_t n, float p, uint64_t seed, uint64_t first) {
  const uint32_t threshold = dropout_threshold(p);
  const T scale = dropout_scale<T>(threshold);
  const int64_t groups = (n + kDropoutElementsPerBlock - 1) / kDropoutElementsPerBlock;
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t g = 0; g < groups; ++g) {
    const PhiloxBlock block = philox4x32(seed, first + static_cast<uint64_t>(g));
    const int64_t begin = g * kDropoutElementsPerBlock, end = std::min(n, begin + kDropoutElementsPerBlock);
    for (int64_t i = begin; i < end; ++i)
      out[i] = philox_u16(block, static_cast<int>(i - begin)) >= threshold ? in[i] * scale : T(0);
  }
}

template void dropout_cpu<float>(float*, const float*, int64_t, float, uint64_t, uint64_t);
template void dropout_cpu<double>(double*, const double*, int64_t, float, uint64_t, uint64_t);

}  // namespace ft::kernels
