// Programmatic dependent launches (compute capability 9.0 on): a kernel launched this way may
// start while the stream's previous work ends, and waits for that work on the device
// (`griddepcontrol.wait`, which every such kernel must run before it reads what the previous
// work wrote). The previous kernel may let it launch early with `griddepcontrol.launch_dependents`.
#pragma once

#include <cuda_runtime.h>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"

namespace ft::kernels {

// Whether the current device runs programmatic dependent launches.
inline bool programmatic_launch_supported() {
  int device = 0;
  FT_CUDA_CHECK(cudaGetDevice(&device));
  return cuda::device_properties(device).major >= 9;
}

// Launches kernel(args...) with `shared_bytes` of dynamic shared memory, as a programmatic
// dependent when `programmatic` and the device has them, plainly otherwise (a kernel's
// `griddepcontrol.wait` then has nothing to wait for; below 9.0 the kernels compile it out).
template <class... Params, class... Args>
void launch_maybe_programmatic(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                               cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute dependent;
  dependent.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  dependent.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &dependent;
  config.numAttrs = programmatic && programmatic_launch_supported() ? 1 : 0;
  FT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
}

// Launches kernel(args...) as a programmatic dependent where the device has them.
template <class... Params, class... Args>
void launch_programmatic(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
  launch_maybe_programmatic(true, kernel, grid, block, 0, stream, args...);
}

}  // namespace ft::kernels
