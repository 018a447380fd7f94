// Dropout on the CPU with a mask drawn from counter-based Philox (kernels/random/philox.h).
//   keep_i = philox_uniform_of_four(seed, first, i) > p   (word i % 4 of block first + i / 4)
//   forward:  y[i]  = keep_i ? x[i]  / (1 - p) : 0
//   backward: dx[i] = keep_i ? dy[i] / (1 - p) : 0
// The mask is a pure function of (seed, first, i), so it is never stored: the backward calls
// the same kernel on dy with the same counters, and a GPU kernel reproduces the same mask. A
// mask of n elements uses the blocks first .. first + ceil(n / 4) - 1; the op still reserves n
// counters per call, so the generator advances as it always did.
#pragma once

#include <cstdint>

namespace ft::kernels {

// out[i] = keep_i ? in[i] * scale : 0, for i in [0, n). scale is 1 / (1 - p).
template <class T>
void dropout_cpu(T* out, const T* in, int64_t n, float p, T scale, uint64_t seed, uint64_t first);

}  // namespace ft::kernels
