// Data movement on the CUDA backend, behind Tensor::to, copy_, clone, contiguous and fill_:
// bytes between host and devices, dtype conversion, strided gathers and fills. Everything runs
// on the device's stream (framework/cuda/context.h). Calls that touch host memory return once
// the host can read or reuse it; device-only calls return at once, queued in stream order.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/device.h"
#include "framework/dtype.h"

namespace ft::cuda {

// Copies `bytes` bytes between any two devices (host to device, device to host, between or
// within GPUs). A copy between two GPUs is ordered after earlier work on both streams, and
// work queued later on either stream comes after it.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// dst[i] = convert(src[i]) for n contiguous elements on `device`, between any two of f32, f64,
// f16, bf16, i32, u8; the same bits as kernels::convert_cpu (floating to integer out of range
// is undefined there, as a C cast is).
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, int device);

// dst (contiguous) = src viewed through shape and strides (in elements), up to 8 dimensions,
// elements of 1, 2, 4 or 8 bytes.
void gather_strided(void* dst, const void* src, int elem_bytes, const std::vector<int64_t>& shape,
                    const std::vector<int64_t>& strides, int device);

// dst[i] = value for n contiguous elements of `dtype`, rounded as kernels::fill_cpu rounds.
void fill(void* dst, DType dtype, int64_t n, double value, int device);

}  // namespace ft::cuda
