// mlp on the CPU, the reference the fused CUDA path is held to: the same numbers as linear ->
// gelu -> linear (forward and all five gradients), finite differences in f64, fp32 against fp64,
// frozen inputs, recompute_gelu, and the shape and dtype errors.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "tests/support/error_message.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::error_message;
using ft::testing::fp32_vs_fp64_error;
using ft::testing::gradcheck;
using ft::testing::random_f64;
using ft::testing::relative_error;

namespace {

// x [..., C], W1 [H, C], b1 [H], W2 [C_out, H], b2 [C_out], from seeds starting at `seed`.
std::vector<Tensor> mlp_inputs(const Shape& x_shape, int64_t hidden, int64_t out, uint64_t seed) {
  const int64_t in = x_shape.back();
  return {random_f64(x_shape, seed), random_f64({hidden, in}, seed + 1), random_f64({hidden}, seed + 2),
          random_f64({out, hidden}, seed + 3), random_f64({out}, seed + 4)};
}

Tensor fused(const std::vector<Tensor>& v, bool recompute_gelu) {
  return mlp(v[0], v[1], v[2], v[3], v[4], MlpOptions{recompute_gelu});
}

Tensor composed(const std::vector<Tensor>& v) { return linear(gelu(linear(v[0], v[1], v[2])), v[3], v[4]); }

// The output and the gradients of sum(f(inputs) * w) for w from a fixed seed; inputs become fresh
// leaves, those marked in `frozen` without requires_grad (their gradient stays undefined).
struct Run {
  Tensor out;
  std::vector<Tensor> grads;
};

Run run_backward(const ft::testing::OpFn& f, std::vector<Tensor> inputs, const std::vector<bool>& frozen = {}) {
  for (size_t i = 0; i < inputs.size(); ++i)
    inputs[i] = inputs[i].clone().set_requires_grad(i >= frozen.size() || !frozen[i]);
  Run run{f(inputs), {}};
  sum(mul(run.out, random_f64(run.out.shape(), 99))).backward();
  for (const Tensor& x : inputs) run.grads.push_back(x.grad());
  return run;
}

}  // namespace

TEST_CASE("mlp gives linear -> gelu -> linear's output and gradients") {
  for (Shape x_shape : {Shape{5, 8}, Shape{2, 3, 8}, Shape{8}})
    for (bool recompute : {false, true}) {
      CAPTURE(shape_str(x_shape));
      CAPTURE(recompute);
      const std::vector<Tensor> inputs = mlp_inputs(x_shape, 12, 6, 10);
      const Run expected = run_backward(composed, inputs);
      const Run got = run_backward([recompute](const std::vector<Tensor>& v) { return fused(v, recompute); }, inputs);
      REQUIRE(got.out.shape() == expected.out.shape());
      CHECK(relative_error(got.out, expected.out) < 1e-14);
      for (size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(i);
        REQUIRE(got.grads[i].defined());
        REQUIRE(got.grads[i].shape() == inputs[i].shape());
        CHECK(relative_error(got.grads[i], expected.grads[i]) < 1e-14);
      }
    }
}

TEST_CASE("mlp's gradients of all five inputs match finite differences, with and without recomputing gelu") {
  const std::vector<Tensor> inputs = mlp_inputs({2, 3, 5}, 7, 4, 20);
  for (bool recompute : {false, true}) {
    CAPTURE(recompute);
    CHECK(gradcheck([recompute](const std::vector<Tensor>& v) { return fused(v, recompute); }, inputs) < 1e-6);
  }
}

TEST_CASE("mlp in fp32 stays within 1e-5 of fp64 at GPT-2's width") {
  std::vector<Tensor> inputs = mlp_inputs({16, 768}, 3072, 768, 30);
  for (int weight : {1, 3}) inputs[weight] = scale(inputs[weight], 0.02);  // GPT-2's init scale: O(1) activations
  CHECK(fp32_vs_fp64_error([](const std::vector<Tensor>& v) { return fused(v, false); }, inputs) < 1e-5);
}

TEST_CASE("mlp with recompute_gelu gives the very same gradients") {
  const std::vector<Tensor> inputs = mlp_inputs({9, 6}, 10, 5, 40);
  const Run kept = run_backward([](const std::vector<Tensor>& v) { return fused(v, false); }, inputs);
  const Run recomputed = run_backward([](const std::vector<Tensor>& v) { return fused(v, true); }, inputs);
  for (size_t i = 0; i < inputs.size(); ++i)
    CHECK(recomputed.grads[i].to_double_vector() == kept.grads[i].to_double_vector());
}

TEST_CASE("mlp: frozen inputs get no gradient, the others the same as when all train") {
  const std::vector<Tensor> inputs = mlp_inputs({4, 6}, 8, 3, 50);
  const ft::testing::OpFn f = [](const std::vector<Tensor>& v) { return fused(v, false); };
  const Run all = run_backward(f, inputs);
  const std::vector<std::vector<bool>> frozen_sets = {
      {true, false, false, false, false},  // x (the first block's input)
      {false, true, true, false, false},   // the first layer
      {false, false, false, true, true},   // the second layer
      {false, false, true, false, false},  // fc_bias alone: the GELU gradient without its bias gradient
      {false, true, true, true, true},     // every weight: only x's gradient
      {true, true, true, true, false},     // only proj_bias trains: no hidden gradient at all
  };
  for (const std::vector<bool>& frozen : frozen_sets) {
    const Run run = run_backward(f, inputs, frozen);
    for (size_t i = 0; i < inputs.size(); ++i) {
      CAPTURE(i);
      CHECK(run.grads[i].defined() == !frozen[i]);
      if (!frozen[i]) CHECK(run.grads[i].to_double_vector() == all.grads[i].to_double_vector());
    }
  }
}

TEST_CASE("mlp records nothing when nothing needs a gradient") {
  const std::vector<Tensor> inputs = mlp_inputs({3, 4}, 5, 2, 60);
  CHECK_FALSE(fused(inputs, false).grad_fn());
  std::vector<Tensor> leaves = inputs;
  leaves[1] = leaves[1].clone().set_requires_grad(true);
  NoGradGuard no_grad;
  CHECK_FALSE(fused(leaves, false).grad_fn());
}

TEST_CASE("mlp errors name the op, the input and what was expected") {
  const std::vector<Tensor> v = mlp_inputs({3, 4}, 5, 2, 70);
  auto call = [](const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
    return [=] { mlp(x, w1, b1, w2, b2); };
  };
  CHECK(error_message(call(random_f64({3, 7}, 1), v[1], v[2], v[3], v[4])) ==
        "mlp: x [3, 7] has last dimension 7, expected fc_weight's in-features 4 (fc_weight [5, 4])");
  CHECK(error_message(call(v[0], v[1], random_f64({4}, 1), v[3], v[4])) == "mlp: fc_bias has shape [4], expected [5]");
  CHECK(error_message(call(v[0], v[1], v[2], random_f64({2, 4}, 1), v[4])) ==
        "mlp: proj_weight has shape [2, 4], expected [2, 5]");
  CHECK(error_message(call(v[0], v[1], v[2], v[3], random_f64({3}, 1))) ==
        "mlp: proj_bias has shape [3], expected [2]");
  CHECK(error_message(call(v[0], v[1], Tensor(), v[3], v[4])) == "mlp: fc_bias is undefined");
  CHECK(error_message(call(v[0], random_f64({5}, 1), v[2], v[3], v[4])) ==
        "mlp: fc_weight has shape [5], expected 2 dimensions");
  CHECK(error_message(call(v[0], random_f64({0, 4}, 1), random_f64({0}, 1), random_f64({2, 0}, 1), v[4])) ==
        "mlp: fc_weight [0, 4] and proj_weight [2, 0] must have no zero-sized dimension");
  CHECK(error_message(call(v[0].to(DType::f32), v[1], v[2], v[3], v[4])).find("mlp: dtype mismatch") == 0);
  CHECK(error_message(call(v[0].to(DType::bf16), v[1].to(DType::bf16), v[2].to(DType::bf16), v[3].to(DType::bf16),
                           v[4].to(DType::bf16))) ==
        "mlp: dtype bf16 is not supported on the cpu (expected f32 or f64)");
}

TEST_CASE("mlp with no rows gives an empty output and zero bias gradients") {
  std::vector<Tensor> inputs = mlp_inputs({1, 4}, 5, 2, 80);
  inputs[0] = Tensor::zeros({0, 4}, DType::f64);
  const Run run = run_backward([](const std::vector<Tensor>& v) { return fused(v, false); }, inputs);
  CHECK(run.out.shape() == Shape{0, 2});
  CHECK(run.grads[2].to_double_vector() == std::vector<double>(5, 0.0));
  CHECK(run.grads[3].to_double_vector() == std::vector<double>(10, 0.0));
}
