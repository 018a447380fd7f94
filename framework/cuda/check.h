// Error checks for CUDA and cuBLAS calls: FT_CUDA_CHECK(cudaMalloc(&p, n)) throws ft::Error
// naming the error, the failing expression and where it is, e.g. "CUDA error
// cudaErrorInvalidDevice (invalid device ordinal) in cudaSetDevice(99) at
// framework/cuda/context.cpp:42". Throwing also clears the runtime's last-error slot, so a
// failed call is not reported a second time by the next FT_CUDA_CHECK_LAUNCH().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace ft::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expression, const char* file, int line);

// `file` relative to the repository root when it lies inside it (as __FILE__ does when the
// build passes absolute paths), else unchanged.
const char* repo_relative_path(const char* file);

}  // namespace ft::cuda

#define FT_CUDA_CHECK(expr)                                                                                     \
  do {                                                                                                          \
    const cudaError_t ft_cuda_error_ = (expr);                                                                  \
    if (ft_cuda_error_ != cudaSuccess) ::ft::cuda::throw_cuda_error(ft_cuda_error_, #expr, __FILE__, __LINE__); \
  } while (0)

#define FT_CUBLAS_CHECK(expr)                                                       \
  do {                                                                              \
    const cublasStatus_t ft_cublas_status_ = (expr);                                \
    if (ft_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::ft::cuda::throw_cublas_error(ft_cublas_status_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration (or an earlier asynchronous error)
// at the launch site. Errors inside the kernel surface later, at the next synchronisation.
#define FT_CUDA_CHECK_LAUNCH()                                                           \
  do {                                                                                   \
    const cudaError_t ft_cuda_error_ = cudaGetLastError();                               \
    if (ft_cuda_error_ != cudaSuccess)                                                   \
      ::ft::cuda::throw_cuda_error(ft_cuda_error_, "kernel launch", __FILE__, __LINE__); \
  } while (0)
