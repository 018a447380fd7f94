// Element copies on the GPU: the launchers of kernels/copy/copy.cu, on raw device pointers and a
// stream. The CPU references are in copy_cpu.h; the results match them bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "framework/dtype.h"

namespace ft::kernels {

constexpr int kMaxGatherDims = 8;

// Shape and strides (in elements) of a strided view, passed to the kernel by value.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxGatherDims] = {};
  int64_t strides[kMaxGatherDims] = {};
};

// dst (contiguous, n elements of elem_bytes = 1, 2, 4 or 8) = src viewed through `layout`.
void gather_strided_cuda(void* dst, const void* src, int elem_bytes, const StridedLayout& layout, int64_t n,
                         cudaStream_t stream);

// dst[i] = convert(src[i]) for n elements, as convert_cpu does.
void convert_cuda(void* dst, DType dst_type, const void* src, DType src_type, int64_t n, cudaStream_t stream);

// Writes the low elem_bytes bytes of `pattern` (little-endian) into each of n elements.
void fill_cuda(void* dst, int elem_bytes, uint64_t pattern, int64_t n, cudaStream_t stream);

}  // namespace ft::kernels
