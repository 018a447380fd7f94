// The throwing half of framework/cuda/check.h. Paths are shortened by comparing them with this
// file's own __FILE__, whose tail "framework/cuda/check.cpp" is known: what precedes it is the
// repository root as the build spells it.
#include "framework/cuda/check.h"

#include <cstring>

#include "framework/error.h"

namespace ft::cuda {

const char* repo_relative_path(const char* file) {
  static const size_t root_length = std::strlen(__FILE__) - std::strlen("framework/cuda/check.cpp");
  return std::strncmp(file, __FILE__, root_length) == 0 ? file + root_length : file;
}

void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line) {
  cudaGetLastError();  // clears a non-sticky error so that it is reported once, here
  throw Error(str("CUDA error ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ") in ", expression, " at ",
                  repo_relative_path(file), ":", line));
}

void throw_cublas_error(cublasStatus_t status, const char* expression, const char* file, int line) {
  throw Error(str("cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ") in ",
                  expression, " at ", repo_relative_path(file), ":", line));
}

}  // namespace ft::cuda
