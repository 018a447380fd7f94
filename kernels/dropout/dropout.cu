// Dropout on the GPU, with the CPU's mask: element i is kept when the uniform of word i % 4 of
// the Philox block at counter first + i / 4 (philox_uniform_of_four, kernels/random/philox.h,
// shared by host and device code) exceeds p, and a kept element is scaled by 1 / (1 - p). The
// backward recomputes the mask from (seed, first), so it drops the same elements again.
//
// A Philox4x32-10 block costs ten rounds of 32-bit multiplies, about as much work as moving a
// bf16 element twice; one block per element made the kernel compute-bound at a third of the
// memory bandwidth. One block now serves four neighbouring elements, and a thread moves 16-byte
// packs (4 floats or 8 halves: one or two blocks) per load and store, like the elementwise map
// kernel. A pack starts at an element index that is a multiple of 4, so its elements never share
// a block with another thread's.
//
// Even so the integer work is close to the memory time, so the kernel keeps it lean and keeps
// bytes in flight: the ten rounds' keys depend on the seed only, so the host computes them once
// and they reach the kernel as arguments, which the rounds' XORs read straight from the constant
// bank (a round is two wide multiplies and two XORs); a thread loads two packs before it draws
// any numbers, so the draws hide the loads' latency; and the registers are capped so that 2048
// threads fit on an SM: 64 KB of loads in flight per SM.
//
// The keep test is exact integer arithmetic, not the CPU's float comparison, yet draws the same
// mask: uint_to_unit(u) = ((u >> 8) + 1) * 2^-24 and p * 2^24 are exact in fp32, so
// uint_to_unit(u) > p is (u >> 8) + 1 > floor(p * 2^24), i.e. u >= floor(p * 2^24) * 256. That
// saves an int-to-float conversion, a slow instruction, per element.
#include <algorithm>
#include <cstdint>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/dropout/dropout_cuda.h"
#include "kernels/random/philox.h"

namespace ft::kernels {
namespace {

// A Philox block's four words decide four neighbouring elements.
constexpr int kWordsPerBlock = 4;
constexpr int kPhiloxRounds = 10;
// Packs a thread loads before it draws: two 16-byte loads in flight per thread.
constexpr int kPacksPerThread = 2;
// Blocks of kBlockThreads resident per SM: 2048 threads, the SM's limit, at <= 32 registers.
constexpr int kMinBlocksPerSm = 8;

struct Mask {
  uint32_t round_keys[kPhiloxRounds][2];  // philox4x32's (k0, k1) in each round, for the seed
  uint64_t first;
  uint32_t min_kept_word;  // word u keeps its element iff u >= this
  float scale;
};

// philox4x32(seed, counter) of kernels/random/philox.h, with the key schedule precomputed.
__device__ __forceinline__ PhiloxBlock philox_block(uint64_t counter, const Mask& m) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
#pragma unroll
  for (int round = 0; round < kPhiloxRounds; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    c0 = hi1 ^ c1 ^ m.round_keys[round][0];
    c1 = lo1;
    c2 = hi0 ^ c3 ^ m.round_keys[round][1];
    c3 = lo0;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

// The key schedule of philox4x32: the seed's halves plus a Weyl sequence, one step per round.
Mask make_mask(uint64_t seed, uint64_t first, float p, float scale) {
  Mask m{};
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    m.round_keys[round][0] = k0;
    m.round_keys[round][1] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  m.first = first;
  // floor(p * 2^24) < 2^24, so the shifted threshold fits in 32 bits (see the top of the file).
  m.min_kept_word = static_cast<uint32_t>(p * 16777216.0f) << 8;
  m.scale = scale;
  return m;
}

template <class T>
__device__ __forceinline__ T drop(T x, uint32_t word, const Mask& m) {
  return from_float<T>(word >= m.min_kept_word ? to_float(x) * m.scale : 0.0f);
}

// Elements [4g, 4g + 4) of [0, n) from block g, one element per load.
template <class T>
__device__ __forceinline__ void drop_group(T* out, const T* in, int64_t g, int64_t n, const Mask& m) {
  const PhiloxBlock r = philox_block(m.first + static_cast<uint64_t>(g), m);
#pragma unroll
  for (int w = 0; w < kWordsPerBlock; ++w) {
    const int64_t i = g * kWordsPerBlock + w;
    if (i < n) out[i] = drop(in[i], r.x[w], m);
  }
}

// Pack p of the input (elements [p * kPack, p * kPack + kPack)), dropped with its blocks.
template <class T, int kPack>
__device__ __forceinline__ Pack<T, kPack> drop_pack(const Pack<T, kPack>& x, int64_t p, const Mask& m) {
  constexpr int kBlocksPerPack = kPack / kWordsPerBlock;
  const uint64_t first_block = m.first + static_cast<uint64_t>(p) * kBlocksPerPack;
  Pack<T, kPack> y;
#pragma unroll
  for (int b = 0; b < kBlocksPerPack; ++b) {
    const PhiloxBlock r = philox_block(first_block + b, m);
#pragma unroll
    for (int w = 0; w < kWordsPerBlock; ++w) y.v[b * kWordsPerBlock + w] = drop(x.v[b * kWordsPerBlock + w], r.x[w], m);
  }
  return y;
}

// kPack elements per 16-byte load and store, kPacksPerThread packs loaded at once (a grid
// stride apart, so each load is coalesced), then the tail that does not fill a pack by groups of
// four; kPack == 0 (a pointer not 16-byte aligned) does everything by groups.
template <int kPack, class T>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSm)
    dropout_kernel(T* out, const T* in, int64_t n, const Mask m) {
  int64_t packs = 0;
  if constexpr (kPack > 0) {
    using P = Pack<T, kPack>;
    packs = n / kPack;
    const int64_t stride = grid_stride();
    for (int64_t p = global_index(); p < packs; p += kPacksPerThread * stride) {
      P x[kPacksPerThread];
#pragma unroll
      for (int u = 0; u < kPacksPerThread; ++u)
        if (p + u * stride < packs) x[u] = reinterpret_cast<const P*>(in)[p + u * stride];
#pragma unroll
      for (int u = 0; u < kPacksPerThread; ++u)
        if (p + u * stride < packs) reinterpret_cast<P*>(out)[p + u * stride] = drop_pack(x[u], p + u * stride, m);
    }
  }
  const int64_t first_group = packs * kPack / kWordsPerBlock;
  for (int64_t g = first_group + global_index(); g * kWordsPerBlock < n; g += grid_stride())
    drop_group(out, in, g, n, m);
}

// The grid for `units` grid-stride iterations' work, sized so that every thread runs the same
// number of iterations: with blocks_for's cap alone, 1.5 iterations a thread (f32 at GPT-2's
// shapes) would leave half the grid idle in the second.
int balanced_blocks(int64_t units) {
  const int64_t max_threads = static_cast<int64_t>(blocks_for(units)) * kBlockThreads;
  const int64_t iterations = std::max<int64_t>(1, (units + max_threads - 1) / max_threads);  // units may be 0
  return blocks_for((units + iterations - 1) / iterations);
}

}  // namespace

template <class T>
void dropout_cuda(T* out, const T* in, int64_t n, float p, float scale, uint64_t seed, uint64_t first,
                  cudaStream_t stream) {
  FT_CHECK(p >= 0.0f && p < 1.0f, "dropout_cuda: p = ", p, " is outside [0, 1)");
  if (n == 0) return;
  const Mask mask = make_mask(seed, first, p, scale);
  auto* o = device_ptr(out);
  const auto* i = device_ptr(in);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (is_pack_aligned(o) && is_pack_aligned(i))
    dropout_kernel<kVector>
        <<<balanced_blocks((n / kVector + kPacksPerThread - 1) / kPacksPerThread), kBlockThreads, 0, stream>>>(o, i, n,
                                                                                                               mask);
  else
    dropout_kernel<0>
        <<<blocks_for((n + kWordsPerBlock - 1) / kWordsPerBlock), kBlockThreads, 0, stream>>>(o, i, n, mask);
  FT_CUDA_CHECK_LAUNCH();
}

template void dropout_cuda<float>(float*, const float*, int64_t, float, float, uint64_t, uint64_t, cudaStream_t);
template void dropout_cuda<ft::bfloat16>(ft::bfloat16*, const ft::bfloat16*, int64_t, float, float, uint64_t, uint64_t,
                                         cudaStream_t);
template void dropout_cuda<ft::half>(ft::half*, const ft::half*, int64_t, float, float, uint64_t, uint64_t,
                                     cudaStream_t);

}  // namespace ft::kernels
