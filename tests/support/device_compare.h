// Comparing a GPU result with its CPU reference, for the GPU suites. Both tensors come to the
// host in f32 (a bf16 or f16 result converts exactly) and are compared two ways: the norm-wise
// relative error, and the worst element's error relative to the reference's largest
// magnitude, since one wrong element (a tail a kernel forgot) hides in a norm over millions.
// Non-finite values are counted apart: poisoned outputs that were never written are NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "framework/tensor.h"

namespace ft::testing {

struct Comparison {
  double relative = 0;    // ||got - expected|| / max(||got||, ||expected||), 0 when both are 0
  double worst = 0;       // max |got - expected| / max |expected|
  int64_t nonfinite = 0;  // elements finite in one tensor and not in the other

  std::string str() const {
    return ft::str("relative error ", relative, ", worst element ", worst, ", ", nonfinite, " non-finite mismatches");
  }
};

// A contiguous f32 copy on the host (the tensor itself when it already is one).
inline Tensor host_f32(const Tensor& t) { return t.to(DType::f32).to(Device::cpu()).contiguous(); }

inline Comparison compare(const Tensor& got, const Tensor& expected) {
  FT_CHECK(got.shape() == expected.shape(), "compare: shapes ", shape_str(got.shape()), " and ",
           shape_str(expected.shape()), " differ");
  const Tensor a = host_f32(got), b = host_f32(expected);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t n = a.numel();
  double diff = 0, norm_a = 0, norm_b = 0, max_diff = 0, max_b = 0;
  int64_t nonfinite = 0;
#pragma omp parallel for reduction(+ : diff, norm_a, norm_b, nonfinite) reduction(max : max_diff, max_b)
  for (int64_t i = 0; i < n; ++i) {
    const double x = pa[i], y = pb[i];
    if (std::isfinite(x) != std::isfinite(y)) ++nonfinite;
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    diff += (x - y) * (x - y);
    norm_a += x * x;
    norm_b += y * y;
    max_diff = std::max(max_diff, std::abs(x - y));
    max_b = std::max(max_b, std::abs(y));
  }
  Comparison c;
  const double norm = std::sqrt(std::max(norm_a, norm_b));
  c.relative = norm == 0 ? 0 : std::sqrt(diff) / norm;
  c.worst = max_b == 0 ? max_diff : max_diff / max_b;
  c.nonfinite = nonfinite;
  return c;
}

// The bound a GPU kernel computing in fp32 meets against a CPU reference, by the dtype it reads
// and writes: fp32 arithmetic, or one rounding of the result to bf16 (8 bits of mantissa:
// 2^-9 = 2e-3 at worst) or f16 (11 bits: 5e-4).
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return 1e-2;
    case DType::f16:
      return 2e-3;
    default:
      return 1e-5;
  }
}

}  // namespace ft::testing
