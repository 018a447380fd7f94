// Element copies on the CPU: gathering a strided view into contiguous memory, converting
// between dtypes, and filling. These are the CPU references of kernels/copy/copy.cu.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/dtype.h"

namespace ft::kernels {

// dst (contiguous, row-major over `shape`) = src viewed through `strides` (in elements).
// Both have element size `elem_bytes`; no conversion.
void gather_strided_cpu(void* dst, const void* src, int elem_bytes, const std::vector<int64_t>& shape,
                        const std::vector<int64_t>& strides);

// dst[i] = convert(src[i]) for n contiguous elements between any two non-packed dtypes.
// Float to integer truncates toward zero, as a C cast does.
void convert_cpu(void* dst, DType dst_type, const void* src, DType src_type, int64_t n);

// dst[i] = value for n contiguous elements.
void fill_cpu(void* dst, DType type, int64_t n, double value);

}  // namespace ft::kernels
