// sum, mean and sum_to_shape on CUDA against the CPU reference in f64, in f32, bf16 and f16:
// every way the kept and summed dimensions can interleave, sizes that split into chunks and
// sizes that do not, empty reductions, the gradients of sum and mean, and the same bits on
// every run (no atomics).
#include <doctest/doctest.h>

#include <cmath>

#include "framework/cuda/caching_allocator.h"
#include "tests/gpu/op_test_support.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::testing;

namespace {

// Inputs with mean and spread `magnitude`: a sum of n of them is about n * magnitude, far from
// the cancellation that would make a relative error meaningless.
Twin sum_inputs(const Shape& shape, DType dtype, Generator& gen, double magnitude) {
  return random_values(shape, dtype, gen, magnitude, magnitude);
}

double scalar_error(const Tensor& gpu, const Tensor& cpu) {
  CHECK(all_finite(gpu));
  return std::abs(gpu.item() - cpu.item()) / std::abs(cpu.item());
}

}  // namespace

TEST_CASE("sum and mean on CUDA match the CPU, and their gradients spread the upstream scalar") {
  cuda::set_poison_allocations(true);
  Generator gen(201);
  // One element, a partial warp, a block and a bit, GPT-2's [B*T, C], a logits row count.
  const int64_t sizes[] = {1, 3, 257, 1023, 8192 * 768, 50257 * 8};
  for (DType dtype : kGpuDTypes) {
    for (int64_t n : sizes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(n);
      // Sums up to 8192 * 768 * 0.005 = 31457 and means of 0.005 are normal f16 numbers.
      Twin x = sum_inputs({n}, dtype, gen, 0.005);
      x.gpu.set_requires_grad(true);
      x.cpu.set_requires_grad(true);
      Tensor total = sum(x.gpu), expected = sum(x.cpu);
      CHECK(total.shape() == Shape{});
      CHECK(scalar_error(total, expected) <= one_rounding_tolerance(dtype));
      CHECK(scalar_error(mean(x.gpu), mean(x.cpu)) <= one_rounding_tolerance(dtype));

      scale(total, 0.37).backward();
      scale(expected, 0.37).backward();
      CHECK(gpu_error(x.gpu.grad(), x.cpu.grad()) <= one_rounding_tolerance(dtype));
      // 1/n is below f16's smallest normal number (6.1e-5) beyond 16384 elements, and its
      // subnormal has too few bits for the bound.
      if (dtype == DType::f16 && n > 16384) continue;
      x.gpu.zero_grad();
      x.cpu.zero_grad();
      mean(x.gpu).backward();
      mean(x.cpu).backward();
      CHECK(gpu_error(x.gpu.grad(), x.cpu.grad()) <= one_rounding_tolerance(dtype));
    }
  }
}

TEST_CASE("sum_to_shape on CUDA matches the CPU for every layout of kept and summed dimensions") {
  cuda::set_poison_allocations(true);
  Generator gen(202);
  struct Case {
    Shape x, out;
  };
  const Case cases[] = {
      {{8192, 768}, {768}},                // a bias gradient: many rows, cut into chunks
      {{8, 1024, 768}, {1024, 768}},       // position embeddings over the batch: one chunk
      {{8192, 768}, {8192, 1}},            // rows summed along the contiguous dimension
      {{8192, 768}, {1, 1}},               // everything, into one element
      {{8192, 768}, {}},                   // everything, into a scalar
      {{100000, 3}, {1, 3}},               // few outputs across many rows
      {{3, 1023, 5}, {3, 1, 5}},           // kept, summed, kept
      {{1023, 3, 7}, {1, 3, 1}},           // summed, kept, summed
      {{2, 3, 4, 5, 6}, {2, 1, 4, 1, 6}},  // alternating over five dimensions
      {{5, 1, 3}, {1, 1, 3}},              // size-1 dimensions in between
      {{7, 1}, {1}},                       // fewer output dimensions
  };
  for (DType dtype : kGpuDTypes) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(c.x));
      CAPTURE(shape_str(c.out));
      // Each output sums `summed` inputs: outputs of about 100, within f16's range.
      const double summed = static_cast<double>(shape_numel(c.x)) / static_cast<double>(shape_numel(c.out));
      Twin x = sum_inputs(c.x, dtype, gen, 100.0 / summed);
      CHECK(gpu_error(sum_to_shape(x.gpu, c.out), sum_to_shape(x.cpu, c.out)) <= one_rounding_tolerance(dtype));
    }
  }
}

TEST_CASE("sum_to_shape on CUDA of an empty reduction writes zeros") {
  cuda::set_poison_allocations(true);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Tensor empty = Tensor::empty({0, 3}, dtype, kGpu);
    CHECK(sum_to_shape(empty, {1, 3}).to_double_vector() == std::vector<double>{0, 0, 0});
    CHECK(sum(empty).item() == 0);
    CHECK(sum_to_shape(empty, {0, 1}).numel() == 0);
  }
}

TEST_CASE("sums on CUDA give the same bits on every run") {
  Generator gen(203);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Tensor x = random_values({8192, 768}, dtype, gen).gpu;
    const double total = sum(x).item();
    const std::vector<double> columns = sum_to_shape(x, {768}).to_double_vector();
    const std::vector<double> rows = sum_to_shape(x, {8192, 1}).to_double_vector();
    for (int run = 0; run < 5; ++run) {
      CHECK(sum(x).item() == total);
      CHECK(sum_to_shape(x, {768}).to_double_vector() == columns);
      CHECK(sum_to_shape(x, {8192, 1}).to_double_vector() == rows);
    }
  }
}

TEST_CASE("sums on CUDA reject dtypes without a kernel") {
  Generator gen(204);
  Tensor f64 = randn({4, 3}, gen, DType::f64, kGpu);
  const std::string expected = ": dtype f64 is not supported on cuda (expected f32, bf16 or f16)";
  CHECK(testing::error_message([&] { sum(f64); }) == "sum" + expected);
  CHECK(testing::error_message([&] { sum_to_shape(f64, {3}); }) == "sum_to_shape" + expected);
}
