// The CUDA side of Tensor's data movement: checks, then the device's context and stream, then
// the kernels of kernels/copy/copy.cu. A fill converts its value once on the host with the CPU
// reference and sends the element's bits, so it rounds exactly as fill_cpu does.
#include "framework/cuda/copy.h"

#include <cstring>

#include "framework/cuda/check.h"
#include "framework/cuda/context.h"
#include "framework/error.h"
#include "kernels/copy/copy_cpu.h"
#include "kernels/copy/copy_cuda.h"

namespace ft::cuda {
namespace {

// Orders work queued from now on `later` after the work queued so far on `earlier`, across
// devices, without blocking the host.
void stream_wait(const Context& later, const Context& earlier) {
  DeviceGuard guard(earlier.device);  // an event is recorded on a stream of its own device
  cudaEvent_t event;
  FT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  FT_CUDA_CHECK(cudaEventRecord(event, earlier.stream));
  FT_CUDA_CHECK(cudaStreamWaitEvent(later.stream, event, 0));
  FT_CUDA_CHECK(cudaEventDestroy(event));  // released once the wait no longer needs it
}

void copy_between_gpus(void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  Context& from = context(src_device);
  Context& to = context(dst_device);
  stream_wait(from, to);  // whatever the destination's stream still does with dst comes first
  {
    DeviceGuard guard(src_device);
    FT_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, from.stream));
  }
  stream_wait(to, from);  // later work on the destination sees the data
}

}  // namespace

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    copy_between_gpus(dst, dst_device.index, src, src_device.index, bytes);
    return;
  }
  const int device = dst_device.is_cuda() ? dst_device.index : src_device.index;
  const cudaMemcpyKind kind = src_device.is_cpu()   ? cudaMemcpyHostToDevice
                              : dst_device.is_cpu() ? cudaMemcpyDeviceToHost
                                                    : cudaMemcpyDeviceToDevice;
  Context& ctx = context(device);
  DeviceGuard guard(device);
  FT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, ctx.stream));
  // The host may read the destination, or free or overwrite the source, as soon as we return.
  if (kind != cudaMemcpyDeviceToDevice) FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, int device) {
  FT_CHECK(dst_dtype != DType::nf4 && src_dtype != DType::nf4, "convert: ", dtype_name(src_dtype), " -> ",
           dtype_name(dst_dtype), ": nf4 is a packed type and converts only through (de)quantisation");
  Context& ctx = context(device);
  DeviceGuard guard(device);
  kernels::convert_cuda(dst, dst_dtype, src, src_dtype, n, ctx.stream);
}

void gather_strided(void* dst, const void* src, int elem_bytes, const std::vector<int64_t>& shape,
                    const std::vector<int64_t>& strides, int device) {
  FT_CHECK(shape.size() == strides.size(), "gather_strided: shape ", shape.size(), " dims but strides ",
           strides.size());
  FT_CHECK(shape.size() <= kernels::kMaxGatherDims, "gather_strided: a view of ", shape.size(),
           " dimensions; the CUDA gather handles at most ", kernels::kMaxGatherDims);
  kernels::StridedLayout layout;
  layout.ndim = static_cast<int>(shape.size());
  int64_t n = 1;
  for (int d = 0; d < layout.ndim; ++d) {
    layout.shape[d] = shape[d];
    layout.strides[d] = strides[d];
    n *= shape[d];
  }
  Context& ctx = context(device);
  DeviceGuard guard(device);
  kernels::gather_strided_cuda(dst, src, elem_bytes, layout, n, ctx.stream);
}

void fill(void* dst, DType dtype, int64_t n, double value, int device) {
  FT_CHECK(dtype != DType::nf4, "fill: nf4 is a packed type and is written only by quantisation");
  uint64_t pattern = 0;
  kernels::fill_cpu(&pattern, dtype, 1, value);
  Context& ctx = context(device);
  DeviceGuard guard(device);
  kernels::fill_cuda(dst, dtype_bits(dtype) / 8, pattern, n, ctx.stream);
}

}  // namespace ft::cuda
