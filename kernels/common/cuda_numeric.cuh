// What every CUDA kernel of flashtrain shares: the mapping from flashtrain's host-side 16-bit
// types (framework/dtype.h: ft::half, ft::bfloat16, layout-compatible with CUDA's) to CUDA's,
// loads and stores through float (kernels compute in fp32 whatever they read and write), grid
// helpers for grid-stride loops, and warp/block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "framework/dtype.h"

namespace ft::kernels {

// ---- types ------------------------------------------------------------------------------------

template <class T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<ft::half> {
  using type = __half;
};
template <>
struct CudaType<ft::bfloat16> {
  using type = __nv_bfloat16;
};
template <class T>
using cuda_t = typename CudaType<T>::type;

// A host pointer type's device twin: launchers take ft types, kernels CUDA types.
template <class T>
cuda_t<T>* device_ptr(T* p) {
  return reinterpret_cast<cuda_t<T>*>(p);
}
template <class T>
const cuda_t<T>* device_ptr(const T* p) {
  return reinterpret_cast<const cuda_t<T>*>(p);
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ---- grids ------------------------------------------------------------------------------------

constexpr int kBlockThreads = 256;
// Enough blocks to fill any current GPU several times over; larger inputs loop (grid-stride).
constexpr int64_t kMaxBlocks = 4096;

inline int blocks_for(int64_t n, int threads = kBlockThreads) {
  return static_cast<int>(std::max<int64_t>(1, std::min((n + threads - 1) / threads, kMaxBlocks)));
}

__device__ __forceinline__ int64_t global_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- reductions -------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The sum over the block, returned to every thread. `scratch` holds 32 floats in shared memory;
// every thread of the block must call it (blockDim.x a multiple of 32).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// ---- 16-byte vector access -------------------------------------------------------------------

// The widest load and store the GPU does in one instruction: bandwidth-bound kernels move
// Pack<T, kPackBytes / sizeof(T)> at a time where their pointers allow (is_pack_aligned).
constexpr int kPackBytes = 16;

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

__host__ __device__ inline bool is_pack_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kPackBytes == 0;
}

}  // namespace ft::kernels
