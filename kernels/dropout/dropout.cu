// Dropout on the GPU, with the CPU's mask: element i is kept when the Philox uniform of counter
// first + i (kernels/random/philox.h, shared by host and device code) exceeds p, and a kept
// element is scaled by 1 / (1 - p). The uniform is built from integer operations and exact
// float steps (24 random bits, plus one, times 2^-24), so CPU and GPU draw the same floats and
// compare them with the same fp32 p: the same elements drop on both, and the backward, which
// recomputes the mask from (seed, first), drops the same ones again.
//
// Each element costs one Philox block (ten rounds of 32-bit multiplies) and uses one of its
// four words, as the CPU does; cheaper but different masks would break CPU/GPU equality.
#include "framework/cuda/check.h"
#include "kernels/common/cuda_numeric.cuh"
#include "kernels/dropout/dropout_cuda.h"
#include "kernels/random/philox.h"

namespace ft::kernels {
namespace {

template <class T>
__global__ void dropout_kernel(T* out, const T* in, int64_t n, float p, float scale, uint64_t seed, uint64_t first) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const bool keep = philox_uniform(seed, first + static_cast<uint64_t>(i)) > p;
    out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
  }
}

}  // namespace

template <class T>
void dropout_cuda(T* out, const T* in, int64_t n, float p, float scale, uint64_t seed, uint64_t first,
                  cudaStream_t stream) {
  if (n == 0) return;
  dropout_kernel<<<blocks_for(n), kBlockThreads, 0, stream>>>(device_ptr(out), device_ptr(in), n, p, scale, seed,
                                                              first);
  FT_CUDA_CHECK_LAUNCH();
}

template void dropout_cuda<float>(float*, const float*, int64_t, float, float, uint64_t, uint64_t, cudaStream_t);
template void dropout_cuda<ft::bfloat16>(ft::bfloat16*, const ft::bfloat16*, int64_t, float, float, uint64_t, uint64_t,
                                         cudaStream_t);
template void dropout_cuda<ft::half>(ft::half*, const ft::half*, int64_t, float, float, uint64_t, uint64_t,
                                     cudaStream_t);

}  // namespace ft::kernels
