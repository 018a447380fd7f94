// softmax over the last dimension: gradients, a plain-loop reference, stability for large
// logits, fp32 against fp64, and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

// exp(x) / sum exp(x) per row, without the max shift (fine for the small test values).
std::vector<double> reference_softmax(const std::vector<double>& x, int64_t cols) {
  std::vector<double> y(x.size());
  for (size_t row = 0; row < x.size(); row += cols) {
    double total = 0;
    for (int64_t j = 0; j < cols; ++j) total += std::exp(x[row + j]);
    for (int64_t j = 0; j < cols; ++j) y[row + j] = std::exp(x[row + j]) / total;
  }
  return y;
}

Tensor softmax_of_first(const std::vector<Tensor>& in) { return softmax(in[0]); }

}  // namespace

TEST_CASE("softmax gradients match finite differences") {
  CHECK(ft::testing::gradcheck(softmax_of_first, {random_f64({3, 5}, 1)}) < 1e-6);
  CHECK(ft::testing::gradcheck(softmax_of_first, {random_f64({2, 3, 4}, 2)}) < 1e-6);
  // A non-contiguous input (a transposed view) takes the same path after a copy.
  CHECK(ft::testing::gradcheck([](const std::vector<Tensor>& in) { return softmax(transpose(in[0], 0, 1)); },
                               {random_f64({4, 3}, 3)}) < 1e-6);
}

TEST_CASE("softmax matches a plain-loop reference and rows sum to one") {
  Tensor x = random_f64({4, 7}, 4);
  std::vector<double> got = softmax(x).to_double_vector();
  CHECK(ft::testing::relative_error(got, reference_softmax(x.to_double_vector(), 7)) < 1e-14);
  for (int row = 0; row < 4; ++row) {
    double total = 0;
    for (int j = 0; j < 7; ++j) total += got[row * 7 + j];
    CHECK(total == doctest::Approx(1.0).epsilon(1e-14));
  }
  Tensor xt = transpose(random_f64({5, 3}, 5), 0, 1);
  CHECK(softmax(xt).to_double_vector() == softmax(xt.contiguous()).to_double_vector());
}

TEST_CASE("softmax is stable for large logits and shift invariant") {
  Tensor big = Tensor::from_vector({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, DType::f32);
  Tensor small = Tensor::from_vector({0, 1, 2, 0, -1, -2}, {2, 3}, DType::f32);
  std::vector<double> got = softmax(big).to_double_vector();
  for (double v : got) CHECK(std::isfinite(v));
  CHECK(ft::testing::relative_error(got, softmax(small).to_double_vector()) < 1e-6);
}

TEST_CASE("softmax in fp32 agrees with fp64") {
  CHECK(ft::testing::fp32_vs_fp64_error(softmax_of_first, {random_f64({8, 33}, 6)}) < 1e-5);
}

TEST_CASE("softmax rejects bad inputs") {
  CHECK_THROWS_WITH(softmax(Tensor::full({}, 1.0)), doctest::Contains("softmax: x has shape []"));
  CHECK_THROWS_WITH(softmax(Tensor::from_ints({1, 2, 3}, {3})), doctest::Contains("softmax: dtype i32"));
}
