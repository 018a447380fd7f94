// Dropout on the GPU, with the CPU's mask (kernels/dropout/dropout_cpu.h): element i is kept when
// the 16-bit number i % 8 of the Philox block at counter first + i / 8 is at least t = round(p *
// 65536), and a kept element is scaled by 65536 / (65536 - t). The backward recomputes the mask
// from (seed, first), so it drops the same elements again.
//
// A Philox4x32-10 block costs ten rounds of two wide multiplies and two XORs, about 40
// instructions; masking, scaling and converting a 16-byte bf16 pack costs about as much again. At
// one block per four elements (24-bit uniforms) a bf16 pack took two blocks, about 130
// instructions, and the kernel was as much compute- as memory-bound (SM 61%, DRAM 45%, 67% of
// the copy bandwidth). Sixteen bits per element make one block serve eight elements: one block
// per bf16 or f16 pack, about 85 instructions. An f32 pack is half a block, and the two
// neighbouring threads that share it both draw it, one using words 0 and 1, the other words 2 and
// 3: one block per 16 bytes, as before, and sharing it by a shuffle would need warp-uniform loops.
//
// The rest keeps bytes in flight: the ten rounds' keys depend on the seed only, so the host
// computes them once and they reach the kernel as arguments, which the rounds' XORs read straight
// from the constant bank; a thread loads two packs before it draws any numbers, so the draws hide
// the loads' latency; and the registers are capped so that 2048 threads fit on an SM: 64 KB of
// loads in flight per SM.
//
// The keep test compares whole 32-bit words, saving the extraction of each half: with T = t <<
// 16, a word's high half is >= t iff word >= T, and its low half is >= t iff (word << 16) >= T.
// t = 65536 (p within 2^-17 of 1) drops everything and would not fit that shift: it is a memset.
#include <algorithm>
#include <cstdint>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/dropout/dropout_cpu.h"
#include "kernels/dropout/dropout_cuda.h"
#include "kernels/random/philox.h"

namespace ft::kernels {
namespace {

constexpr int kPhiloxRounds = 10;
// Packs a thread loads before it draws: two 16-byte loads in flight per thread.
constexpr int kPacksPerThread = 2;
// Blocks of kBlockThreads resident per SM: 2048 threads, the SM's limit, at <= 32 registers.
constexpr int kMinBlocksPerSm = 8;
constexpr uint32_t kDropAll = 65536;

struct Mask {
  uint32_t round_keys[kPhiloxRounds][2];  // philox4x32's (k0, k1) in each round, for the seed
  uint64_t first;
  uint32_t min_kept_shifted;  // t << 16, t <= 65535 (see the top of the file)
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
Mask make_mask(uint64_t seed, uint64_t first, uint32_t threshold) {
  Mask m{};
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    m.round_keys[round][0] = k0;
    m.round_keys[round][1] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  m.first = first;
  m.min_kept_shifted = threshold << 16;
  m.scale = dropout_scale<float>(threshold);
  return m;
}

// Whether the 16-bit number in half `high` of `word` keeps its element (philox_u16 >= t).
__device__ __forceinline__ bool keeps(uint32_t word, bool high, const Mask& m) {
  return (high ? word : word << 16) >= m.min_kept_shifted;
}

template <class T>
__device__ __forceinline__ T drop(T x, bool keep, const Mask& m) {
  return from_float<T>(keep ? to_float(x) * m.scale : 0.0f);
}

// Elements [max(begin, 8g), min(n, 8g + 8)) from block g, one element per load.
template <class T>
__device__ __forceinline__ void drop_group(T* out, const T* in, int64_t g, int64_t begin, int64_t n, const Mask& m) {
  const PhiloxBlock r = philox_block(m.first + static_cast<uint64_t>(g), m);
#pragma unroll
  for (int h = 0; h < kDropoutElementsPerBlock; ++h) {
    const int64_t i = g * kDropoutElementsPerBlock + h;
    if (i >= begin && i < n) out[i] = drop(in[i], keeps(r.x[h / 2], h % 2, m), m);
  }
}

// Pack p of the input (elements [p * kPack, p * kPack + kPack)), dropped with its block's halves.
template <class T, int kPack>
__device__ __forceinline__ Pack<T, kPack> drop_pack(const Pack<T, kPack>& x, uint64_t p, const Mask& m) {
  constexpr int kPacksPerBlock = kDropoutElementsPerBlock / kPack;  // 1 (bf16, f16) or 2 (f32)
  static_assert(kPacksPerBlock * kPack == kDropoutElementsPerBlock, "a pack is a whole block or half of one");
  const PhiloxBlock r = philox_block(m.first + p / kPacksPerBlock, m);
  const bool upper = p % kPacksPerBlock != 0;  // the second f32 pack of a block takes words 2 and 3
  Pack<T, kPack> y;
#pragma unroll
  for (int e = 0; e < kPack; ++e) {
    uint32_t word = r.x[e / 2];
    if constexpr (kPacksPerBlock == 2) word = upper ? r.x[2 + e / 2] : word;
    y.v[e] = drop(x.v[e], keeps(word, e % 2, m), m);
  }
  return y;
}

// kPack elements per 16-byte load and store, kPacksPerThread packs loaded at once (a grid
// stride apart, so each load is coalesced), then the tail that does not fill a pack by groups of
// eight; kPack == 0 (a pointer not 16-byte aligned) does everything by groups.
template <int kPack, class T>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSm)
    dropout_kernel(T* out, const T* in, int64_t n, const Mask m) {
  int64_t packed = 0;  // elements done by packs
  if constexpr (kPack > 0) {
    using P = Pack<T, kPack>;
    const int64_t packs = n / kPack, stride = grid_stride();
    for (int64_t p = global_index(); p < packs; p += kPacksPerThread * stride) {
      P x[kPacksPerThread];
#pragma unroll
      for (int u = 0; u < kPacksPerThread; ++u)
        if (p + u * stride < packs) x[u] = reinterpret_cast<const P*>(in)[p + u * stride];
#pragma unroll
      for (int u = 0; u < kPacksPerThread; ++u)
        if (p + u * stride < packs) reinterpret_cast<P*>(out)[p + u * stride] = drop_pack(x[u], p + u * stride, m);
    }
    packed = packs * kPack;
  }
  for (int64_t g = packed / kDropoutElementsPerBlock + global_index(); g * kDropoutElementsPerBlock < n;
       g += grid_stride())
    drop_group(out, in, g, packed, n, m);
}

// The grid for `units` grid-stride iterations' work, sized so that every thread runs the same
// number of iterations: with blocks_for's cap alone, 1.5 iterations a thread would leave half
// the grid idle in the second.
int balanced_blocks(int64_t units) {
  const int64_t max_threads = static_cast<int64_t>(blocks_for(units)) * kBlockThreads;
  const int64_t iterations = std::max<int64_t>(1, (units + max_threads - 1) / max_threads);  // units may be 0
  return blocks_for((units + iterations - 1) / iterations);
}

}  // namespace

template <class T>
void dropout_cuda(T* out, const T* in, int64_t n, float p, uint64_t seed, uint64_t first, cudaStream_t stream) {
  FT_CHECK(p >= 0.0f && p < 1.0f, "dropout_cuda: p = ", p, " is outside [0, 1)");
  if (n == 0) return;
  const uint32_t threshold = dropout_threshold(p);
  if (threshold == kDropAll) {  // all-zero bits are +0 in every float type
    FT_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(n) * sizeof(T), stream));
    return;
  }
  const Mask mask = make_mask(seed, first, threshold);
  auto* o = device_ptr(out);
  const auto* i = device_ptr(in);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (is_pack_aligned(o) && is_pack_aligned(i))
    dropout_kernel<kVector>
        <<<balanced_blocks((n / kVector + kPacksPerThread - 1) / kPacksPerThread), kBlockThreads, 0, stream>>>(o, i, n,
                                                                                                               mask);
  else
    dropout_kernel<0>
        <<<blocks_for((n + kDropoutElementsPerBlock - 1) / kDropoutElementsPerBlock), kBlockThreads, 0, stream>>>(
            o, i, n, mask);
  FT_CUDA_CHECK_LAUNCH();
}

template void dropout_cuda<float>(float*, const float*, int64_t, float, uint64_t, uint64_t, cudaStream_t);
template void dropout_cuda<ft::bfloat16>(ft::bfloat16*, const ft::bfloat16*, int64_t, float, uint64_t, uint64_t,
                                         cudaStream_t);
template void dropout_cuda<ft::half>(ft::half*, const ft::half*, int64_t, float, uint64_t, uint64_t, cudaStream_t);

}  // namespace ft::kernels
