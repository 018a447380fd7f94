// add_layer_norm (the residual add fused with layer norm) on CUDA against the CPU in f64, from
// the same random inputs: both outputs, and the gradients of x, branch, weight and bias through
// a loss that uses both (sum(dsum * sum) + sum(dnormed * normed), run by backward(), so the
// residual gradient and the normalisation's are summed as in a GPT-2 block), in f32, bf16 and
// f16; GPT-2's widths and odd ones that catch tails; rows too wide for shared memory; rows that
// are not 16-byte aligned; frozen parameters; and the errors. Allocations are poisoned, so an
// unwritten output is NaN.
#include <doctest/doctest.h>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

struct Inputs {
  Tensor x, branch, weight, bias, dsum, dnormed;
};

// x with a mean away from 0 (the variance must not cancel), weights around 1, small biases.
Inputs random_inputs(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  const Shape cols = {shape.back()};
  auto draw = [&](const Shape& s, double mean, double std) {
    Tensor t = Tensor::empty(s, dtype, kGpu);
    normal_(t, gen, mean, std);
    return t;
  };
  Inputs in;
  in.x = draw(shape, 0.5, 2.0);
  in.branch = draw(shape, 0.0, 1.0);
  in.weight = draw(cols, 1.0, 0.5);
  in.bias = draw(cols, 0.0, 0.5);
  in.dsum = draw(shape, 0.0, 1.0);
  in.dnormed = draw(shape, 0.0, 1.0);
  return in;
}

struct Result {
  Tensor sum, normed, dx, dbranch, dweight, dbias;
};

// add_layer_norm and backward() from both outputs, on `device` in `dtype`.
Result run(const Inputs& in, DType dtype, Device device, bool train_params = true) {
  Tensor x = leaf(in.x, dtype, device), branch = leaf(in.branch, dtype, device);
  Tensor weight = leaf(in.weight, dtype, device, train_params), bias = leaf(in.bias, dtype, device, train_params);
  const ResidualNorm r = add_layer_norm(x, branch, weight, bias);
  const Tensor dsum = in.dsum.to(dtype).to(device), dnormed = in.dnormed.to(dtype).to(device);
  add(sum(mul(r.sum, dsum)), sum(mul(r.normed, dnormed))).backward();
  return {r.sum, r.normed, x.grad(), branch.grad(), weight.grad(), bias.grad()};
}

void check_against_cpu(const Inputs& in, DType dtype) {
  const Result gpu = run(in, dtype, kGpu), cpu = run(in, DType::f64, Device::cpu());
  check_layer_norm_result("sum", gpu.sum, cpu.sum, dtype);
  check_layer_norm_result("normed", gpu.normed, cpu.normed, dtype);
  check_layer_norm_result("x.grad", gpu.dx, cpu.dx, dtype);
  check_layer_norm_result("branch.grad", gpu.dbranch, cpu.dbranch, dtype);
  check_layer_norm_result("weight.grad", gpu.dweight, cpu.dweight, dtype);
  check_layer_norm_result("bias.grad", gpu.dbias, cpu.dbias, dtype);
}

}  // namespace

TEST_CASE("add_layer_norm on CUDA matches the CPU forward and backward in f32, bf16 and f16") {
  cuda::set_poison_allocations(true);
  // GPT-2 small's activations (8 x 1024 tokens of 768), medium, large and XL widths (XL's f32
  // rows give 7 rows a block); 4000 columns (3 f32 rows a block, a partial last block); 25000
  // columns, too wide for shared memory in every dtype (the sum is reread from global memory);
  // then tails: 5 and 3 columns, 1023 (no 16-byte packs), one row, a row count not a multiple
  // of 8.
  const Shape shapes[] = {{8, 1024, 768}, {4, 1024}, {5, 1280}, {5, 1600}, {37, 4000}, {3, 25000},
                          {9, 5},         {1023, 3}, {7, 1023}, {1, 768},  {13, 64}};
  uint64_t seed = 1;
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (const Shape& shape : shapes) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape_str(shape));
      check_against_cpu(random_inputs(shape, dtype, seed++), dtype);
    }
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("add_layer_norm's sum on CUDA is add's, bit for bit") {
  // The backward reads the stored sum back: it must be x + branch rounded once to the dtype,
  // exactly as add gives it.
  cuda::set_poison_allocations(true);
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dtype));
    const Inputs in = random_inputs({64, 768}, dtype, 30);
    const ResidualNorm r = add_layer_norm(in.x, in.branch, in.weight, in.bias);
    CHECK(r.sum.to_double_vector() == add(in.x, in.branch).to_double_vector());
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("add_layer_norm on CUDA reads rows that are not 16-byte aligned element by element") {
  cuda::set_poison_allocations(true);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    Inputs in = random_inputs({37, 768}, dtype, 40);
    in.branch = misaligned_copy(in.branch);
    check_against_cpu(in, dtype);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("add_layer_norm on CUDA with frozen weight and bias gives x and branch their gradients only") {
  cuda::set_poison_allocations(true);
  const Inputs in = random_inputs({64, 768}, DType::f32, 50);
  const Result gpu = run(in, DType::f32, kGpu, false), cpu = run(in, DType::f64, Device::cpu(), false);
  check_layer_norm_result("x.grad", gpu.dx, cpu.dx, DType::f32);
  check_layer_norm_result("branch.grad", gpu.dbranch, cpu.dbranch, DType::f32);
  CHECK(!gpu.dweight.defined());
  CHECK(!gpu.dbias.defined());
  cuda::set_poison_allocations(false);
}

TEST_CASE("add_layer_norm on CUDA refuses mixed devices and f64") {
  Tensor x = Tensor::zeros({4, 8}, DType::f32, kGpu);
  Tensor weight = Tensor::full({8}, 1.0, DType::f32, kGpu), bias = Tensor::zeros({8}, DType::f32, kGpu);
  CHECK_THROWS_WITH(add_layer_norm(x, x.to(Device::cpu()), weight, bias),
                    doctest::Contains("add_layer_norm: device mismatch"));
  Tensor x64 = x.to(DType::f64);
  CHECK_THROWS_WITH(add_layer_norm(x64, x64, weight.to(DType::f64), bias.to(DType::f64)),
                    doctest::Contains("add_layer_norm: dtype f64 is not supported on cuda"));
}
