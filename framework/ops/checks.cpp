#include "framework/ops/checks.h"

namespace ft {

void check_defined(const char* op, const char* name, const Tensor& t) {
  FT_CHECK(t.defined(), op, ": ", name, " is undefined");
}

void check_same_dtype_device(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    FT_CHECK(t.dtype() == first->dtype(), op, ": dtype mismatch: ", describe(*first), " and ", describe(t));
    FT_CHECK(t.device() == first->device(), op, ": device mismatch: ", describe(*first), " and ", describe(t));
  }
}

void check_floating(const char* op, const char* name, const Tensor& t) {
  FT_CHECK(is_floating(t.dtype()), op, ": ", name, " is ", describe(t), ", expected a floating dtype");
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType expected) {
  FT_CHECK(t.dtype() == expected, op, ": ", name, " is ", describe(t), ", expected dtype ", dtype_name(expected));
}

void check_dim(const char* op, const char* name, const Tensor& t, int64_t expected_dims) {
  FT_CHECK(t.dim() == expected_dims, op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ",
           expected_dims, " dimensions");
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  FT_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected));
}

void check_cpu(const char* op, std::initializer_list<Tensor> tensors) {
  for (const Tensor& t : tensors)
    FT_CHECK(!t.defined() || t.device().is_cpu(), op, ": ", describe(t),
             " is on a GPU, and this op has no CUDA kernel yet (only the CPU backend runs ops so far)");
}

}  // namespace ft
