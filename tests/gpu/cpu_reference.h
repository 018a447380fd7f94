// Helpers of the GPU op suites, which hold each CUDA op to its CPU reference: inputs are drawn
// once and rounded to the dtype under test, so the GPU (in that dtype) and the CPU (in f64) see
// the same values, and the error bounds follow from the dtype's rounding.
#pragma once

#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "framework/random.h"
#include "tests/support/gradcheck.h"

namespace ft::gpu_testing {

inline const Device kGpu = Device::cuda(0);
inline constexpr DType kCudaFloatTypes[] = {DType::f32, DType::bf16, DType::f16};

// The normwise relative error (testing::relative_error) allowed of a result computed in fp32
// and rounded to `dtype` at the end, against the f64 CPU reference. One rounding leaves an rms
// relative error of about 2^-(bits+1) / sqrt(3): 1.1e-3 for bf16 (8 significant bits), 2.8e-4 for
// f16 (11); ops whose backward composes two or three roundings stay within these bounds. A
// tensor of one element has no rms averaging: three f16 roundings can reach 3 x 2^-11 = 1.5e-3
// (seen on the H100 for the GELU gradient of a [1] tensor), hence 2e-3 for f16. f32 results
// differ from f64 by fp32 accumulation only.
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 1e-5;
    case DType::bf16:
      return 5e-3;
    case DType::f16:
      return 2e-3;
    default:
      break;
  }
  FAIL("no GPU tolerance for dtype ", dtype_name(dtype));
  return 0;
}

// The same values twice: `gpu` in the dtype under test on cuda:0, `cpu` in f64 on the CPU.
struct Values {
  Tensor gpu, cpu;
};

// Normals N(mean, std^2) from `gen` (Philox, fp32), rounded to `dtype`.
inline Values random_values(const Shape& shape, DType dtype, Generator& gen, double mean = 0.0, double std = 1.0) {
  Tensor drawn = Tensor::empty(shape, DType::f32);
  normal_(drawn, gen, mean, std);
  Tensor rounded = drawn.to(dtype);
  return {rounded.to(kGpu), rounded.to(DType::f64)};
}

// As above, both leaves that require grad.
inline Values random_leaves(const Shape& shape, DType dtype, Generator& gen, double mean = 0.0, double std = 1.0) {
  Values v = random_values(shape, dtype, gen, mean, std);
  v.gpu.set_requires_grad(true);
  v.cpu.set_requires_grad(true);
  return v;
}

inline bool all_finite(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// The relative error of a GPU result against its CPU reference, after checking that the GPU
// wrote every element (poisoned allocations make a forgotten one NaN) and that shapes agree.
inline double error_against(const Tensor& gpu, const Tensor& cpu) {
  REQUIRE(gpu.device() == kGpu);
  REQUIRE(gpu.shape() == cpu.shape());
  CHECK(all_finite(gpu));
  return testing::relative_error(gpu, cpu);
}

// sum(y * w): a scalar whose gradient with respect to y is exactly w, so a backward pass from it
// feeds the op under test a random upstream gradient.
inline Tensor weighted_sum(const Tensor& y, const Tensor& w) { return sum(mul(y, w)); }

}  // namespace ft::gpu_testing
