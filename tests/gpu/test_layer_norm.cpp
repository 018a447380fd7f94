// layer_norm on CUDA against the CPU reference in f64, from the same random inputs: forward and
// backward (dx, dweight, dbias for a random upstream gradient) in f32, bf16 and f16, for GPT-2's
// shapes and odd ones that catch tails; rows that are not 16-byte aligned; frozen parameters;
// bit-identical gradients on a second run (both backward paths); layer_norm into cross_entropy through
// backward(); and the errors. Allocations are poisoned, so an unwritten output is NaN.
#include <doctest/doctest.h>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

struct Inputs {
  Tensor x, weight, bias, dy;
};

// x with a mean away from 0 (the variance must not cancel), weights around 1, small biases.
Inputs random_inputs(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  const Shape cols = {shape.back()};
  Inputs in{Tensor::empty(shape, dtype, kGpu), Tensor::empty(cols, dtype, kGpu), Tensor::empty(cols, dtype, kGpu),
            Tensor::empty(shape, dtype, kGpu)};
  normal_(in.x, gen, 0.5, 2.0);
  normal_(in.weight, gen, 1.0, 0.5);
  normal_(in.bias, gen, 0.0, 0.5);
  normal_(in.dy, gen, 0.0, 1.0);
  return in;
}

struct Result {
  Tensor y, dx, dweight, dbias;
};

// layer_norm and its backward for the upstream gradient in.dy, on `device` in `dtype`.
Result run(const Inputs& in, DType dtype, Device device, bool train_params = true) {
  Tensor x = leaf(in.x, dtype, device), weight = leaf(in.weight, dtype, device, train_params),
         bias = leaf(in.bias, dtype, device, train_params);
  Tensor y = layer_norm(x, weight, bias);
  const Node& node = *y.grad_fn();
  NoGradGuard no_grad;
  std::vector<Tensor> grads = node.backward(in.dy.to(dtype).to(device), node.needs);
  return {y, grads[0], grads[1], grads[2]};
}

void check_against_cpu(const Inputs& in, DType dtype) {
  const Result gpu = run(in, dtype, kGpu), cpu = run(in, DType::f64, Device::cpu());
  check_layer_norm_result("y", gpu.y, cpu.y, dtype);
  check_layer_norm_result("dx", gpu.dx, cpu.dx, dtype);
  check_layer_norm_result("dweight", gpu.dweight, cpu.dweight, dtype);
  check_layer_norm_result("dbias", gpu.dbias, cpu.dbias, dtype);
}

}  // namespace

TEST_CASE("layer_norm on CUDA matches the CPU forward and backward in f32, bf16 and f16") {
  cuda::set_poison_allocations(true);
  // GPT-2 small's activations (8 x 1024 tokens of 768) and GPT-2 XL's width; then tails: one
  // 5 columns (with 1 or 2 columns xhat is constant and dx is exactly 0: only rounding noise), 3 columns, 1023 (no
  // 16-byte packs), a single row, a row count not a multiple of 8.
  // 3001 rows of 768: chunks of 16 rows, the last one short (9 rows), several rows a warp.
  const Shape shapes[] = {{8, 1024, 768}, {3001, 768}, {5, 1600}, {9, 5}, {1023, 3}, {7, 1023}, {1, 768}, {13, 64}};
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

TEST_CASE("layer_norm on CUDA reads rows that are not 16-byte aligned element by element") {
  cuda::set_poison_allocations(true);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    Inputs in = random_inputs({37, 768}, dtype, 40);
    in.x = misaligned_copy(in.x);
    check_against_cpu(in, dtype);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("layer_norm on CUDA with frozen weight and bias computes dx only") {
  cuda::set_poison_allocations(true);
  const Inputs in = random_inputs({64, 768}, DType::f32, 50);
  const Result gpu = run(in, DType::f32, kGpu, false), cpu = run(in, DType::f64, Device::cpu(), false);
  check_layer_norm_result("dx", gpu.dx, cpu.dx, DType::f32);
  CHECK(!gpu.dweight.defined());
  CHECK(!gpu.dbias.defined());
  cuda::set_poison_allocations(false);
}

TEST_CASE("layer_norm's gradients on CUDA are the same bits on every run") {
  // GPT-2's rows in f32 and bf16 (rows held in registers), and rows of 1023 (the streamed path).
  const std::pair<Shape, DType> cases[] = {
      {{8 * 1024, 768}, DType::f32}, {{8 * 1024, 768}, DType::bf16}, {{2000, 1023}, DType::f32}};
  for (const auto& [shape, dtype] : cases) {
    CAPTURE(shape_str(shape));
    CAPTURE(dtype_name(dtype));
    const Inputs in = random_inputs(shape, dtype, 60);
    const Result first = run(in, dtype, kGpu), second = run(in, dtype, kGpu);
    CHECK(first.dweight.to_double_vector() == second.dweight.to_double_vector());
    CHECK(first.dbias.to_double_vector() == second.dbias.to_double_vector());
    CHECK(first.dx.to_double_vector() == second.dx.to_double_vector());
  }
}

TEST_CASE("layer_norm into cross_entropy on CUDA: backward() gives the CPU's leaf gradients") {
  cuda::set_poison_allocations(true);
  const int64_t rows = 300, cols = 768;
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Inputs in = random_inputs({rows, cols}, dtype, 70);
    std::vector<int32_t> ids(rows);
    for (int64_t r = 0; r < rows; ++r) ids[r] = r % 11 == 0 ? -100 : static_cast<int32_t>((r * 7919) % cols);
    std::vector<std::vector<Tensor>> grads;
    std::vector<double> losses;
    for (Device device : {kGpu, Device::cpu()}) {
      const DType type = device.is_cuda() ? dtype : DType::f64;
      Tensor x = leaf(in.x, type, device), weight = leaf(in.weight, type, device), bias = leaf(in.bias, type, device);
      Tensor loss = cross_entropy(layer_norm(x, weight, bias), Tensor::from_ints(ids, {rows}, device));
      loss.backward();
      losses.push_back(loss.item());
      grads.push_back({x.grad(), weight.grad(), bias.grad()});
    }
    CHECK(std::abs(losses[0] - losses[1]) <= tolerance(dtype) * std::abs(losses[1]));
    check_layer_norm_result("x.grad", grads[0][0], grads[1][0], dtype);
    check_layer_norm_result("weight.grad", grads[0][1], grads[1][1], dtype);
    check_layer_norm_result("bias.grad", grads[0][2], grads[1][2], dtype);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("layer_norm on CUDA refuses mixed devices and f64") {
  Tensor x = Tensor::zeros({4, 8}, DType::f32, kGpu);
  Tensor weight = Tensor::full({8}, 1.0, DType::f32, kGpu), bias = Tensor::zeros({8}, DType::f32, kGpu);
  CHECK_THROWS_WITH(layer_norm(x, weight.to(Device::cpu()), bias), doctest::Contains("layer_norm: device mismatch"));
  CHECK_THROWS_WITH(layer_norm(x.to(DType::f64), weight.to(DType::f64), bias.to(DType::f64)),
                    doctest::Contains("layer_norm: dtype f64 is not supported on cuda"));
}
