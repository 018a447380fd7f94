// The CUDA half of an op's dispatch, for CUDA builds only: makes the tensor's GPU current (a
// kernel launches on the current device, and a stream accepts work only from its own device),
// picks the launchers' element type from the dtype (dispatch_cuda_float) and hands over that
// device's one stream, so an op's CUDA branch is a single call.
#pragma once

#ifdef FLASHTRAIN_HAS_CUDA

#include <cuda_runtime_api.h>

#include "framework/cuda/context.h"
#include "framework/ops/checks.h"

namespace ft {

// Calls f(T{}, stream) on t's device, T being float, bfloat16 or half by t's dtype.
template <class F>
void dispatch_cuda(const char* op, const Tensor& t, F&& f) {
  const int device = t.device().index;
  cuda::DeviceGuard guard(device);
  cudaStream_t stream = cuda::context(device).stream;
  dispatch_cuda_float(op, t.dtype(), [&](auto tag) { f(tag, stream); });
}

}  // namespace ft

#endif  // FLASHTRAIN_HAS_CUDA
