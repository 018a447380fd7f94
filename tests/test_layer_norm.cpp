// layer_norm over the last dimension: gradients of x, weight and bias, a plain-loop reference,
// fp32 against fp64, and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

std::vector<double> reference_layer_norm(const std::vector<double>& x, const std::vector<double>& weight,
                                         const std::vector<double>& bias, double eps) {
  const size_t cols = weight.size();
  std::vector<double> y(x.size());
  for (size_t row = 0; row < x.size(); row += cols) {
    double mean = 0, var = 0;
    for (size_t j = 0; j < cols; ++j) mean += x[row + j] / cols;
    for (size_t j = 0; j < cols; ++j) var += (x[row + j] - mean) * (x[row + j] - mean) / cols;
    for (size_t j = 0; j < cols; ++j)
      y[row + j] = (x[row + j] - mean) / std::sqrt(var + eps) * weight[j] + bias[j];
  }
  return y;
}

Tensor layer_norm_of(const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }

}  // namespace

TEST_CASE("layer_norm gradients of x, weight and bias match finite differences") {
  CHECK(ft::testing::gradcheck(layer_norm_of, {random_f64({2, 3, 5}, 1), random_f64({5}, 2), random_f64({5}, 3)}) <
        1e-6);
  // A large eps changes the normalisation: the gradient must still follow it.
  CHECK(ft::testing::gradcheck(
            [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 0.5); },
            {random_f64({4, 6}, 4), random_f64({6}, 5), random_f64({6}, 6)}) < 1e-6);
}

TEST_CASE("layer_norm matches a plain-loop reference") {
  Tensor x = random_f64({3, 4, 8}, 7), w = random_f64({8}, 8), b = random_f64({8}, 9);
  std::vector<double> expected =
      reference_layer_norm(x.to_double_vector(), w.to_double_vector(), b.to_double_vector(), 1e-5);
  CHECK(ft::testing::relative_error(layer_norm(x, w, b).to_double_vector(), expected) < 1e-13);
  // With weight 1 and bias 0 every row has mean 0 and variance 1 (up to eps).
  Tensor y = layer_norm(scale(x, 10.0), Tensor::full({8}, 1.0, DType::f64), Tensor::zeros({8}, DType::f64), 0.0);
  std::vector<double> v = y.to_double_vector();
  for (size_t row = 0; row < v.size(); row += 8) {
    double mean = 0, var = 0;
    for (size_t j = 0; j < 8; ++j) mean += v[row + j] / 8;
    for (size_t j = 0; j < 8; ++j) var += (v[row + j] - mean) * (v[row + j] - mean) / 8;
    CHECK(std::abs(mean) < 1e-14);
    CHECK(var == doctest::Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE("layer_norm in fp32 agrees with fp64") {
  CHECK(ft::testing::fp32_vs_fp64_error(layer_norm_of,
                                        {random_f64({16, 64}, 10), random_f64({64}, 11), random_f64({64}, 12)}) <
        1e-5);
}

TEST_CASE("layer_norm rejects bad inputs") {
  Tensor x = Tensor::zeros({2, 4}), w = Tensor::full({4}, 1.0), b = Tensor::zeros({4});
  CHECK_THROWS_WITH(layer_norm(x, Tensor::zeros({5}), b),
                    doctest::Contains("layer_norm: weight has shape [5], expected [4]"));
  CHECK_THROWS_WITH(layer_norm(x, w, Tensor::zeros({2, 4})),
                    doctest::Contains("layer_norm: bias has shape [2, 4], expected [4]"));
  CHECK_THROWS_WITH(layer_norm(x, Tensor::full({4}, 1.0, DType::f64), b),
                    doctest::Contains("layer_norm: dtype mismatch: f32[2, 4] on cpu and f64[4] on cpu"));
  float dummy[4] = {};
  Tensor gpu_bias = Tensor::from_blob(dummy, {4}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(layer_norm(x, w, gpu_bias),
                    doctest::Contains("layer_norm: device mismatch: f32[2, 4] on cpu and f32[4] on cuda:0"));
  CHECK_THROWS_WITH(layer_norm(Tensor::full({}, 1.0), w, b), doctest::Contains("layer_norm: x has shape []"));
  CHECK_THROWS_WITH(layer_norm(x, w, Tensor()), doctest::Contains("layer_norm: bias is undefined"));
  Tensor int_row = Tensor::from_ints({1, 2, 3, 4}, {1, 4}), int_params = Tensor::from_ints({1, 2, 3, 4}, {4});
  CHECK_THROWS_WITH(layer_norm(int_row, int_params, int_params), doctest::Contains("layer_norm: dtype i32"));
}
