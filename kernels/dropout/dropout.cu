// Dropout on the GPU, with the CPU's mask: element i is kept when the uniform of word i % 4 of
// the Philox block at counter first + i / 4 (philox_uniform_of_four, kernels/random/philox.h,
// shared by host and device code) exceeds p, and a kept element is scaled by 1 / (1 - p). The
// backward recomputes the mask from (seed, first), so it drops the same elements again.
//
// A Philox4x32-10 block costs ten rounds of 32-bit multiplies, about as much work as moving a
// bf16 element twice; one block per element made the kernel compute-bound at a third of the
// memory bandwidth. One block now serves four neighbouring elements, and a thread moves a
// 16-byte pack (4 floats or 8 halves: one or two blocks) per load and store, like the
// elementwise map kernel. A pack starts at an element index that is a multiple of 4, so its
// elements never share a block with another thread's.
//
// The keep test is exact integer arithmetic, not the CPU's float comparison, yet draws the same
// mask: uint_to_unit(u) = ((u >> 8) + 1) * 2^-24 and p * 2^24 are exact in fp32, so
// uint_to_unit(u) > p is (u >> 8) + 1 > floor(p * 2^24), i.e. u >= floor(p * 2^24) * 256. That
// saves an int-to-float conversion, a slow instruction, per element.
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

struct Mask {
  uint64_t seed, first;
  uint32_t min_kept_word;  // word u keeps its element iff u >= this
  float scale;
};

template <class T>
__device__ __forceinline__ T drop(T x, uint32_t word, const Mask& m) {
  return from_float<T>(word >= m.min_kept_word ? to_float(x) * m.scale : 0.0f);
}

// Elements [4g, 4g + 4) of [0, n) from block g, one element per load.
template <class T>
__device__ __forceinline__ void drop_group(T* out, const T* in, int64_t g, int64_t n, const Mask& m) {
  const PhiloxBlock r = philox4x32(m.seed, m.first + static_cast<uint64_t>(g));
#pragma unroll
  for (int w = 0; w < kWordsPerBlock; ++w) {
    const int64_t i = g * kWordsPerBlock + w;
    if (i < n) out[i] = drop(in[i], r.x[w], m);
  }
}

// kPack elements per 16-byte load and store, then the tail that does not fill a pack by groups
// of four; kPack == 0 (a pointer not 16-byte aligned) does everything by groups.
template <int kPack, class T>
__global__ void dropout_kernel(T* out, const T* in, int64_t n, Mask m) {
  int64_t packs = 0;
  if constexpr (kPack > 0) {
    using P = Pack<T, kPack>;
    constexpr int kBlocksPerPack = kPack / kWordsPerBlock;
    packs = n / kPack;
    for (int64_t p = global_index(); p < packs; p += grid_stride()) {
      const P x = reinterpret_cast<const P*>(in)[p];
      P y;
#pragma unroll
      for (int b = 0; b < kBlocksPerPack; ++b) {
        const PhiloxBlock r = philox4x32(m.seed, m.first + static_cast<uint64_t>(p * kBlocksPerPack + b));
#pragma unroll
        for (int w = 0; w < kWordsPerBlock; ++w)
          y.v[b * kWordsPerBlock + w] = drop(x.v[b * kWordsPerBlock + w], r.x[w], m);
      }
      reinterpret_cast<P*>(out)[p] = y;
    }
  }
  const int64_t first_group = packs * kPack / kWordsPerBlock;
  for (int64_t g = first_group + global_index(); g * kWordsPerBlock < n; g += grid_stride())
    drop_group(out, in, g, n, m);
}


}  // namespace

template <class T>
void dropout_cuda(T* out, const T* in, int64_t n, float p, float scale, uint64_t seed, uint64_t first,
                  cudaStream_t stream) {
  FT_CHECK(p >= 0.0f && p < 1.0f, "dropout_cuda: p = ", p, " is outside [0, 1)");
  if (n == 0) return;
  // floor(p * 2^24) < 2^24, so the shifted threshold fits in 32 bits (see the top of the file).
  const Mask mask{seed, first, static_cast<uint32_t>(p * 16777216.0f) << 8, scale};
  auto* o = device_ptr(out);
  const auto* i = device_ptr(in);
  constexpr int kVector = kPackBytes / sizeof(T);
  if (is_pack_aligned(o) && is_pack_aligned(i))
    dropout_kernel<kVector><<<blocks_for(n / kVector), kBlockThreads, 0, stream>>>(o, i, n, mask);
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
