// add, sub, mul (broadcasting), scale, GELU (tanh and erf), ReLU and add_ on CUDA against the CPU reference in f64,
// forward and backward, in f32, bf16 and f16: GPT-2 sizes, odd sizes that leave a tail after
// the 16-byte packs, views that start unaligned, and the errors of a wrong device or dtype.
#include <doctest/doctest.h>

#include <functional>
#include <utility>

#include "framework/cuda/caching_allocator.h"
#include "tests/gpu/op_test_support.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::testing;

namespace {

struct BinaryCase {
  Shape a, b;
};

// Same shapes (GPT-2's residual), a bias, position embeddings over a batch, a column, an outer
// product, a scalar, tiny and odd sizes.
const BinaryCase kBinaryCases[] = {
    {{8192, 768}, {8192, 768}},
    {{8192, 768}, {768}},
    {{8, 1024, 768}, {1024, 768}},
    {{1023, 3}, {1023, 1}},
    {{3, 1, 5}, {1, 7, 1}},
    {{}, {1023}},
    {{1}, {1}},
    {{3}, {3}},
};

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);
struct NamedBinary {
  const char* name;
  BinaryFn fn;
};
const NamedBinary kBinaryOps[] = {{"add", add}, {"sub", sub}, {"mul", mul}};

}  // namespace

TEST_CASE("add, sub and mul broadcast on CUDA as on the CPU, forward and backward") {
  cuda::set_poison_allocations(true);
  Generator gen(101);
  for (DType dtype : kGpuDTypes) {
    for (const BinaryCase& c : kBinaryCases) {
      for (const NamedBinary& named : kBinaryOps) {
        const BinaryFn op = named.fn;
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(c.a));
        CAPTURE(shape_str(c.b));
        CAPTURE(named.name);
        // Values around 1, not 0: the gradient of a broadcast input sums products of the upstream
        // gradient and the other input, rounded to the dtype one by one, and a sum that cancels to
        // near 0 would magnify those roundings past any fixed relative bound.
        Twin a = random_leaves(c.a, dtype, gen, 1.0), b = random_leaves(c.b, dtype, gen, 1.0);
        Tensor y = op(a.gpu, b.gpu), expected = op(a.cpu, b.cpu);
        CHECK(gpu_error(y, expected) <= one_rounding_tolerance(dtype));

        Twin w = random_values(expected.shape(), dtype, gen, 1.0);
        weighted_sum(y, w.gpu).backward();
        weighted_sum(expected, w.cpu).backward();
        CHECK(gpu_error(a.gpu.grad(), a.cpu.grad()) <= one_rounding_tolerance(dtype));
        CHECK(gpu_error(b.gpu.grad(), b.cpu.grad()) <= one_rounding_tolerance(dtype));
      }
    }
  }
}

TEST_CASE("binary ops read transposed and unaligned views on CUDA") {
  cuda::set_poison_allocations(true);
  Generator gen(102);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    // A row of 1023 elements: slicing off the first row leaves data 1023 elements past an
    // aligned block, so the kernel must take its one-element path.
    Twin base = random_values({6, 1023}, dtype, gen), other = random_values({5, 1023}, dtype, gen);
    Tensor unaligned_gpu = slice(base.gpu, 0, 1, 6), unaligned_cpu = slice(base.cpu, 0, 1, 6);
    CHECK(gpu_error(mul(unaligned_gpu, other.gpu), mul(unaligned_cpu, other.cpu)) <= one_rounding_tolerance(dtype));
    CHECK(gpu_error(gelu(unaligned_gpu), gelu(unaligned_cpu)) <= one_rounding_tolerance(dtype));
    // A transposed input is gathered to a contiguous copy first.
    Twin t = random_values({1023, 5}, dtype, gen);
    CHECK(gpu_error(sub(transpose(t.gpu, 0, 1), other.gpu), sub(transpose(t.cpu, 0, 1), other.cpu)) <=
          one_rounding_tolerance(dtype));
  }
}

TEST_CASE("scale, GELU (both forms) and ReLU on CUDA match the CPU, forward and backward") {
  cuda::set_poison_allocations(true);
  Generator gen(103);
  // GPT-2's MLP activation [B*T, 4C], and sizes with a tail after the packs.
  const Shape shapes[] = {{8192, 3072}, {1}, {3}, {1023}, {5, 1023}};
  for (DType dtype : kGpuDTypes) {
    for (const Shape& shape : shapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      const Twin s = random_values(shape, dtype, gen);
      CHECK(gpu_error(scale(s.gpu, -0.37), scale(s.cpu, -0.37)) <= one_rounding_tolerance(dtype));
      const std::pair<const char*, std::function<Tensor(const Tensor&)>> activations[] = {
          {"gelu tanh", [](const Tensor& v) { return gelu(v); }},
          {"gelu erf", [](const Tensor& v) { return gelu(v, GeluForm::erf); }},
          {"relu", [](const Tensor& v) { return relu(v); }}};
      for (const auto& [name, activation] : activations) {
        CAPTURE(name);
        // Inputs of standard deviation 2, drawn in the dtype: GELU's curved part lies within a
        // few units of 0. (Scaling them on both devices would round the GPU's input and not the
        // f64 reference's, an error GELU's steep relative slope far below 0 magnifies.)
        Twin x = random_leaves(shape, dtype, gen, 0.0, 2.0);
        Tensor y = activation(x.gpu), expected = activation(x.cpu);
        CHECK(gpu_error(y, expected) <= one_rounding_tolerance(dtype));

        Twin w = random_values(shape, dtype, gen);
        weighted_sum(y, w.gpu).backward();
        weighted_sum(expected, w.cpu).backward();
        CHECK(gpu_error(x.gpu.grad(), x.cpu.grad()) <= one_rounding_tolerance(dtype));
      }
    }
  }
}

TEST_CASE("add_ accumulates in place on CUDA") {
  cuda::set_poison_allocations(true);
  Generator gen(104);
  for (DType dtype : kGpuDTypes) {
    for (const Shape& shape : {Shape{8192, 768}, Shape{1023}, Shape{1}}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      Twin dst = random_values(shape, dtype, gen), src = random_values(shape, dtype, gen);
      add_(dst.gpu, src.gpu);
      add_(dst.cpu, src.cpu);
      CHECK(gpu_error(dst.gpu, dst.cpu) <= one_rounding_tolerance(dtype));
    }
  }
}

TEST_CASE("elementwise ops on CUDA reject another device and dtypes without a kernel") {
  Generator gen(105);
  Tensor gpu = randn({4}, gen, DType::f32, kGpu), cpu = randn({4}, gen);
  const std::string mixed = testing::error_message([&] { add(gpu, cpu); });
  CHECK(mixed.find("add: device mismatch") != std::string::npos);
  CHECK(mixed.find("cuda:0") != std::string::npos);
  CHECK(testing::error_message([&] { add_(gpu, cpu); }).find("add_: device mismatch") != std::string::npos);

  Tensor f64 = randn({4}, gen, DType::f64, kGpu);
  const std::string expected = ": dtype f64 is not supported on cuda (expected f32, bf16 or f16)";
  CHECK(testing::error_message([&] { mul(f64, f64); }) == "mul" + expected);
  CHECK(testing::error_message([&] { scale(f64, 2.0); }) == "scale" + expected);
  CHECK(testing::error_message([&] { gelu(f64); }) == "gelu" + expected);
  CHECK(testing::error_message([&] { add_(f64, f64); }) == "add_" + expected);
}
