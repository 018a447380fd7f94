// Dropout on the CPU with a mask drawn from counter-based Philox (kernels/random/philox.h).
//   keep_i = philox_uniform(seed, first + i) > p
//   forward:  y[i]  = keep_i ? x[i]  / (1 - p) : 0
//   backward: dx[i] = keep_i ? dy[i] / (1 - p) : 0
// The mask is a pure function of (seed, first, i), so it is never stored: the backward calls
// the same kernel on dy with the same counters, and a GPU kernel reproduces the same mask.
#pragma once

#include <cstdint>

namespace ft::kernels {

// out[i] = keep_i ? in[i] * scale : 0, for i in [0, n). scale is 1 / (1 - p).
template <class T>
void dropout_cpu(T* out, const T* in, int64_t n, float p, T scale, uint64_t seed, uint64_t first);

}  // namespace ft::kernels
