// FT_HOST_DEVICE marks a small function that both the CPU reference and a CUDA kernel call, so
// the two share one definition of a formula (compiled for the device only under nvcc).
#pragma once

#if defined(__CUDACC__)
#define FT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FT_HOST_DEVICE inline
#endif
