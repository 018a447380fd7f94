// Dropout on the GPU: the launcher of kernels/dropout/dropout.cu, on raw device pointers and a
// stream. The mask is dropout_cpu's, bit for bit (same Philox counters, same 16-bit threshold).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ft::kernels {

// out[i] = keep_i ? in[i] * scale : 0, for i in [0, n) and p in [0, 1), with keep_i and scale =
// dropout_scale<float>(dropout_threshold(p)) as in kernels/dropout/dropout_cpu.h; the product is
// taken in fp32.
template <class T>
void dropout_cuda(T* out, const T* in, int64_t n, float p, uint64_t seed, uint64_t first, cudaStream_t stream);

}  // namespace ft::kernels
