// Random integers below a bound, drawn from Philox (kernels/random/philox.h), for shuffling and
// masking. The standard library's distributions and std::shuffle are not used: their results
// differ between standard libraries, and a shuffle must be the same on every machine that
// resumes a run.
#pragma once

#include <cstdint>

#include "kernels/random/philox.h"

namespace ft::data {

// 64 random bits: words 0 and 1 of the Philox block (key, counter).
inline uint64_t philox_bits64(uint64_t key, uint64_t counter) {
  const kernels::PhiloxBlock b = kernels::philox4x32(key, counter);
  return (static_cast<uint64_t>(b.x[1]) << 32) | b.x[0];
}

// The high 64 bits of the 128-bit product a * b.
inline uint64_t mul_high64(uint64_t a, uint64_t b) {
  const uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;  // cannot overflow
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

// floor(bits * n / 2^64), an integer in [0, n) (Lemire's multiply-shift without the rejection
// step): each value's probability is off from 1/n by less than n / 2^64, far below anything a
// test or a training run can see.
inline uint64_t scale_below(uint64_t bits, uint64_t n) { return mul_high64(bits, n); }

}  // namespace ft::data
