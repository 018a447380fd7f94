// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator. Random numbers are a pure function of (key, counter), so element i
// of a draw can be computed by any thread on any device in any order: the CPU and the GPU give
// the same bits for the same seed, and a draw of n numbers needs only the counter it started at.
//
// flashtrain's convention: element i of a draw that starts at counter `offset` uses the block
// philox(key = seed, counter = offset + i); uniforms take word 0, normals words 0 and 1.
// Dropout masks, the one draw hot enough for Philox's cost to matter, take all 128 bits instead,
// as eight 16-bit numbers (philox_u16): one block decides eight neighbouring elements.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace ft::kernels {

struct PhiloxBlock {
  uint32_t x[4];
};

FT_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds of the Philox4x32 bijection on the 128-bit counter (counter, 0) under `seed`.
FT_HOST_DEVICE PhiloxBlock philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;  // the golden ratio and sqrt(3) - 1, the Weyl sequence of the key
    k1 += 0xBB67AE85u;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

// A uniform float in (0, 1]: 24 random bits, never 0 so log() in Box-Muller stays finite.
FT_HOST_DEVICE float uint_to_unit(uint32_t u) { return (static_cast<float>(u >> 8) + 1.0f) * (1.0f / 16777216.0f); }

FT_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t counter) {
  return uint_to_unit(philox4x32(seed, counter).x[0]);
}

// 16-bit number h in [0, 8) of a block: the low (h even) or high (h odd) half of word h / 2.
FT_HOST_DEVICE uint32_t philox_u16(const PhiloxBlock& b, int h) { return (b.x[h / 2] >> (16 * (h % 2))) & 0xFFFFu; }

// A standard normal by Box-Muller from words 0 and 1 of the block.
FT_HOST_DEVICE float philox_normal(uint64_t seed, uint64_t counter) {
  PhiloxBlock b = philox4x32(seed, counter);
  float u1 = uint_to_unit(b.x[0]);
  float u2 = uint_to_unit(b.x[1]);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795865f * u2);
}

}  // namespace ft::kernels
