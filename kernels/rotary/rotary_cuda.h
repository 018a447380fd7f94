// Rotary position embedding on CUDA: the launcher of kernels/rotary/rotary.cu, with the layout,
// angles and results of rotary_cpu.h (NeoX half-split pairs (x[i], x[i + D/2])).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "framework/dtype.h"

namespace ft::kernels {

// x, out: [batch, heads, seq_len, head_dim] on the device, contiguous, head_dim even; out may be
// x. positions: [batch, seq_len] on the device, or null for 0..seq_len-1 in every row. inverse
// rotates by -theta (the backward). T is float, bfloat16 or half.
template <class T>
void rotary_cuda(T* out, const T* x, const int32_t* positions, int64_t batch, int64_t heads, int64_t seq_len,
                 int64_t head_dim, double base, bool inverse, cudaStream_t stream);

}  // namespace ft::kernels
