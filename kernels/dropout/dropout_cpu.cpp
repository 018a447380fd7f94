#include "kernels/dropout/dropout_cpu.h"

#include "kernels/random/philox.h"

namespace ft::kernels {

template <class T>
void dropout_cpu(T* out, const T* in, int64_t n, float p, T scale, uint64_t seed, uint64_t first) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i)
    out[i] = philox_uniform_of_four(seed, first, static_cast<uint64_t>(i)) > p ? in[i] * scale : T(0);
}

template void dropout_cpu<float>(float*, const float*, int64_t, float, float, uint64_t, uint64_t);
template void dropout_cpu<double>(double*, const double*, int64_t, float, double, uint64_t, uint64_t);

}  // namespace ft::kernels
