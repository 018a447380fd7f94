// Dropout on the CPU with a mask drawn from counter-based Philox (kernels/random/philox.h).
//   t      = round(p * 65536), the drop threshold: p is honoured to 1/65536
//   keep_i = philox_u16(philox4x32(seed, first + i / 8), i % 8) >= t   (16 random bits each)
//   forward:  y[i]  = keep_i ? x[i]  * scale : 0,   scale = 65536 / (65536 - t)
//   backward: dx[i] = keep_i ? dy[i] * scale : 0
// An element is kept with probability exactly (65536 - t) / 65536, so scaling by its inverse keeps
// the expectation exact; p = 0 keeps everything (scale 1), and a p that rounds to t = 65536
// (p >= 1 - 2^-17) drops everything. The mask is a pure function of (seed, first, i), so it is
// never stored: the backward calls the same kernel on dy with the same counters, and the GPU
// kernel reproduces the same mask. A mask of n elements uses the blocks first .. first +
// ceil(n / 8) - 1; the op still reserves n counters per call, so the generator advances as it
// always did. Masks drawn before the 16-bit rule (one 24-bit uniform per element) differ: a run
// resumed from an older checkpoint continues with different masks than it would have drawn.
#pragma once

#include <cmath>
#include <cstdint>

namespace ft::kernels {

constexpr int kDropoutElementsPerBlock = 8;  // 16 bits each of a Philox block's 128

// t = round(p * 65536) in [0, 65536] for p in [0, 1): an element is dropped when its 16 bits are below t.
inline uint32_t dropout_threshold(float p) { return static_cast<uint32_t>(std::lround(double{p} * 65536.0)); }

// 1 / the keep probability, in T's arithmetic (exact integers, one rounded division); unused (and
// infinite) when t = 65536 drops everything.
template <class T>
T dropout_scale(uint32_t threshold) {
  return T(65536) / T(65536 - static_cast<int64_t>(threshold));
}

// out[i] = keep_i ? in[i] * dropout_scale<T>(t) : 0, for i in [0, n) and p in [0, 1).
template <class T>
void dropout_cpu(T* out, const T* in, int64_t n, float p, uint64_t seed, uint64_t first);

}  // namespace ft::kernels
