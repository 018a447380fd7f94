// Input checks shared by the ops. Each throws ft::Error naming the op and what was expected.
#pragma once

#include <initializer_list>

#include "framework/tensor.h"

namespace ft {

void check_defined(const char* op, const char* name, const Tensor& t);
// All defined tensors share the first one's dtype and device.
void check_same_dtype_device(const char* op, std::initializer_list<Tensor> tensors);
void check_floating(const char* op, const char* name, const Tensor& t);
void check_dtype(const char* op, const char* name, const Tensor& t, DType expected);
void check_dim(const char* op, const char* name, const Tensor& t, int64_t expected_dims);
void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected);
// For ops without a CUDA kernel yet: a CUDA input is a clear error naming the op.
void check_cpu(const char* op, std::initializer_list<Tensor> tensors);

// Calls f(float{}) or f(double{}) by the dtype; other dtypes are an error naming the op.
template <class F>
void dispatch_float(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default:
      throw Error(str(op, ": dtype ", dtype_name(dtype), " is not supported on the cpu (expected f32 or f64)"));
  }
}

// CUDA kernels compute in fp32 and read and write f32, bf16 or f16: calls f(float{}),
// f(bfloat16{}) or f(half{}) by the dtype (the launchers in kernels/<op>/<op>_cuda.h take these
// types; kernels/common/cuda_numeric.cuh maps them to CUDA's). Other dtypes are an error.
template <class F>
void dispatch_cuda_float(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(bfloat16{}); return;
    case DType::f16: f(half{}); return;
    default:
      throw Error(str(op, ": dtype ", dtype_name(dtype), " is not supported on cuda (expected f32, bf16 or f16)"));
  }
}

}  // namespace ft
