// Per-GPU state of the CUDA backend, and device selection. Every device flashtrain touches gets
// one Context, made on first use: one non-blocking stream that all of flashtrain's work on that
// device goes to, in order (the "one stream" rule: it is what lets the caching allocator reuse
// a freed block at once), the cuBLAS and cuBLASLt handles, and their shared workspace.
//
// Contexts are never destroyed: tearing down handles and streams in static destructors, after
// the driver may have shut down, crashes at exit; the driver reclaims everything anyway.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace ft::cuda {

// The number of CUDA devices; 0 when there is no driver or no GPU. Never throws, never prints.
int device_count();

// Throws ft::Error unless 0 <= device < device_count(), e.g. "cuda:3 requested but only 1 CUDA
// device is present".
void check_device(int device);

// Properties of a device (name, compute capability, memory, SMs), queried once.
const cudaDeviceProp& device_properties(int device);

struct Context {
  int device = 0;
  cudaDeviceProp properties{};
  cudaStream_t stream = nullptr;        // non-blocking: it never waits for the legacy default stream
  cublasHandle_t cublas = nullptr;      // bound to `stream`, using `workspace`
  cublasLtHandle_t cublaslt = nullptr;  // cuBLASLt takes the stream per call: pass `stream`
  // Scratch for cuBLAS and cuBLASLt. Both run on `stream`, so they can share it.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The context of a device, created on first use (thread-safe); throws like check_device.
Context& context(int device);

// Makes `device` current for the calling thread (cudaSetDevice), after check_device.
void set_device(int device);

// Makes a device current for a scope and restores the previous one after. Kernels launch on the
// current device, and a stream only accepts work on its own device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Waits until all work queued on the device's stream has finished; throws on a kernel error.
void synchronize(int device);

}  // namespace ft::cuda
