// add_layer_norm (the residual add fused with the layer norm after it) on the CPU: both outputs
// equal add then layer_norm, gradients through both outputs match finite differences, the two
// nodes it records, fp32 against fp64, and input errors.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

// Both outputs as one flat tensor, so a gradient check's random weights cover a loss
// sum(w1 * sum) + sum(w2 * normed).
Tensor both_outputs_eps(const std::vector<Tensor>& in, double eps) {
  const ResidualNorm r = add_layer_norm(in[0], in[1], in[2], in[3], eps);
  return concat({reshape(r.sum, {-1}), reshape(r.normed, {-1})}, 0);
}

Tensor both_outputs(const std::vector<Tensor>& in) { return both_outputs_eps(in, 1e-5); }

}  // namespace

TEST_CASE("add_layer_norm equals add then layer_norm, bit for bit in f64") {
  for (const Shape& shape : {Shape{2, 3, 8}, Shape{5, 1}, Shape{1, 1023}, Shape{7}}) {
    CAPTURE(shape_str(shape));
    const int64_t cols = shape.back();
    Tensor x = random_f64(shape, 1), branch = random_f64(shape, 2);
    Tensor weight = random_f64({cols}, 3), bias = random_f64({cols}, 4);
    const ResidualNorm fused = add_layer_norm(x, branch, weight, bias, 1e-3);
    const Tensor sum = add(x, branch);
    CHECK(fused.sum.shape() == shape);
    CHECK(fused.normed.shape() == shape);
    CHECK(fused.sum.to_double_vector() == sum.to_double_vector());
    CHECK(fused.normed.to_double_vector() == layer_norm(sum, weight, bias, 1e-3).to_double_vector());
  }
}

TEST_CASE("add_layer_norm gradients through both outputs match finite differences") {
  CHECK(ft::testing::gradcheck(both_outputs, {random_f64({2, 3, 5}, 5), random_f64({2, 3, 5}, 6), random_f64({5}, 7),
                                              random_f64({5}, 8)}) < 1e-6);
  // A large eps changes the normalisation: the gradient must still follow it.
  CHECK(ft::testing::gradcheck(
            [](const std::vector<Tensor>& in) { return both_outputs_eps(in, 0.5); },
            {random_f64({4, 6}, 9), random_f64({4, 6}, 10), random_f64({6}, 11), random_f64({6}, 12)}) < 1e-6);
}

TEST_CASE("add_layer_norm's gradients equal those of add then layer_norm, with non-contiguous inputs") {
  // x is a transposed view, so the op must read it through a contiguous copy.
  Tensor x_storage = random_f64({6, 4}, 13), branch = random_f64({4, 6}, 14);
  Tensor weight = random_f64({6}, 15), bias = random_f64({6}, 16);
  Tensor w_sum = random_f64({4, 6}, 17), w_normed = random_f64({4, 6}, 18);
  std::vector<std::vector<double>> grads[2];
  for (int fused = 0; fused < 2; ++fused) {
    Tensor xs = x_storage.clone().set_requires_grad(true), b = branch.clone().set_requires_grad(true);
    Tensor w = weight.clone().set_requires_grad(true), c = bias.clone().set_requires_grad(true);
    Tensor x = transpose(xs, 0, 1);
    REQUIRE(!x.is_contiguous());
    ResidualNorm r;
    if (fused) {
      r = add_layer_norm(x, b, w, c);
    } else {
      r.sum = add(x, b);
      r.normed = layer_norm(r.sum, w, c);
    }
    add(sum(mul(r.sum, w_sum)), sum(mul(r.normed, w_normed))).backward();
    for (const Tensor& leaf : {xs, b, w, c}) grads[fused].push_back(leaf.grad().to_double_vector());
  }
  for (size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(ft::testing::relative_error(grads[1][i], grads[0][i]) < 1e-14);
  }
}

TEST_CASE("add_layer_norm records an add node and a layer_norm node on the sum") {
  Tensor x = random_f64({3, 4}, 19).set_requires_grad(true), branch = random_f64({3, 4}, 20);
  Tensor weight = random_f64({4}, 21), bias = random_f64({4}, 22);
  const ResidualNorm r = add_layer_norm(x, branch, weight, bias);
  REQUIRE(r.sum.grad_fn());
  REQUIRE(r.normed.grad_fn());
  CHECK(r.sum.grad_fn()->op == "add");
  CHECK(r.normed.grad_fn()->op == "layer_norm");
  CHECK(r.normed.grad_fn()->inputs[0].impl() == r.sum.impl());
  CHECK(r.sum.grad_fn()->needs == GradNeeds{true, false});
  NoGradGuard no_grad;
  const ResidualNorm untracked = add_layer_norm(x, branch, weight, bias);
  CHECK(!untracked.sum.grad_fn());
  CHECK(!untracked.normed.grad_fn());
}

TEST_CASE("add_layer_norm in fp32 agrees with fp64") {
  CHECK(ft::testing::fp32_vs_fp64_error(both_outputs, {random_f64({16, 64}, 23), random_f64({16, 64}, 24),
                                                       random_f64({64}, 25), random_f64({64}, 26)}) < 1e-5);
}

TEST_CASE("add_layer_norm rejects bad inputs") {
  Tensor x = Tensor::zeros({2, 4}), w = Tensor::full({4}, 1.0), b = Tensor::zeros({4});
  CHECK_THROWS_WITH(add_layer_norm(x, Tensor::zeros({2, 5}), w, b),
                    doctest::Contains("add_layer_norm: x has shape [2, 4] and branch has shape [2, 5], expected the "
                                      "same shape (no broadcasting)"));
  CHECK_THROWS_WITH(add_layer_norm(x, Tensor::zeros({4}), w, b),
                    doctest::Contains("add_layer_norm: x has shape [2, 4] and branch has shape [4]"));
  CHECK_THROWS_WITH(add_layer_norm(x, x, Tensor::zeros({5}), b),
                    doctest::Contains("add_layer_norm: weight has shape [5], expected [4]"));
  CHECK_THROWS_WITH(add_layer_norm(x, x, w, Tensor::zeros({2, 4})),
                    doctest::Contains("add_layer_norm: bias has shape [2, 4], expected [4]"));
  CHECK_THROWS_WITH(add_layer_norm(x, Tensor::zeros({2, 4}, DType::f64), w, b),
                    doctest::Contains("add_layer_norm: dtype mismatch: f32[2, 4] on cpu and f64[2, 4] on cpu"));
  float dummy[4] = {};
  Tensor gpu_bias = Tensor::from_blob(dummy, {4}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(add_layer_norm(x, x, w, gpu_bias),
                    doctest::Contains("add_layer_norm: device mismatch: f32[2, 4] on cpu and f32[4] on cuda:0"));
  CHECK_THROWS_WITH(add_layer_norm(Tensor::full({}, 1.0), Tensor::full({}, 1.0), w, b),
                    doctest::Contains("add_layer_norm: x has shape []"));
  CHECK_THROWS_WITH(add_layer_norm(x, Tensor(), w, b), doctest::Contains("add_layer_norm: branch is undefined"));
  Tensor ints = Tensor::from_ints({1, 2, 3, 4}, {1, 4}), int_params = Tensor::from_ints({1, 2, 3, 4}, {4});
  CHECK_THROWS_WITH(add_layer_norm(ints, ints, int_params, int_params), doctest::Contains("add_layer_norm: dtype i32"));
}
