// add, sub, mul (with broadcasting), scale, GELU (both forms), ReLU, sum and mean: gradients against finite
// differences, forward against plain loops, fp32 against fp64, and shape errors.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::fp32_vs_fp64_error;
using ft::testing::gradcheck;
using ft::testing::random_f64;
using ft::testing::relative_error;

TEST_CASE("broadcasting binary ops: gradients, forward, precision") {
  struct Case {
    Shape a, b;
  };
  // Same shapes, a bias over rows, a column over columns, a scalar, rank mismatch both ways.
  for (Case c : {Case{{3, 4}, {3, 4}}, Case{{2, 3, 4}, {4}}, Case{{3, 1}, {3, 4}}, Case{{2, 3}, {}},
                 Case{{4}, {2, 3, 4}}, Case{{2, 1, 4}, {3, 1}}}) {
    CAPTURE(shape_str(c.a));
    CAPTURE(shape_str(c.b));
    Tensor a = random_f64(c.a, 1), b = random_f64(c.b, 2);
    for (auto op : {add, sub, mul}) {
      ft::testing::OpFn f = [op](const std::vector<Tensor>& x) { return op(x[0], x[1]); };
      CHECK(gradcheck(f, {a, b}) < 1e-6);
      CHECK(fp32_vs_fp64_error(f, {a, b}) < 1e-5);
    }
  }
}

TEST_CASE("broadcast forward equals an explicit loop") {
  Tensor a = random_f64({2, 3, 4}, 3), b = random_f64({3, 1}, 4);
  std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector(), expected;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) expected.push_back(va[(i * 3 + j) * 4 + k] * vb[j]);
  CHECK(relative_error(mul(a, b).to_double_vector(), expected) == 0);
  std::vector<double> diff;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) diff.push_back(va[(i * 3 + j) * 4 + k] - vb[j]);
  CHECK(relative_error(sub(a, b).to_double_vector(), diff) == 0);
}

TEST_CASE("scale and GELU") {
  Tensor x = random_f64({3, 5}, 5);
  ft::testing::OpFn s = [](const std::vector<Tensor>& v) { return scale(v[0], -1.75); };
  ft::testing::OpFn g = [](const std::vector<Tensor>& v) { return gelu(v[0]); };
  CHECK(gradcheck(s, {x}) < 1e-6);
  CHECK(gradcheck(g, {scale(x, 2.0)}) < 1e-6);
  CHECK(fp32_vs_fp64_error(g, {scale(x, 2.0)}) < 1e-5);
  // GPT-2's GELU, written out.
  std::vector<double> expected;
  for (double v : x.to_double_vector())
    expected.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
  CHECK(relative_error(gelu(x).to_double_vector(), expected) < 1e-15);
}

TEST_CASE("exact (erf) GELU and ReLU") {
  Tensor x = scale(random_f64({4, 7}, 7), 2.0);
  ft::testing::OpFn g = [](const std::vector<Tensor>& v) { return gelu(v[0], GeluForm::erf); };
  ft::testing::OpFn r = [](const std::vector<Tensor>& v) { return relu(v[0]); };
  CHECK(gradcheck(g, {x}) < 1e-6);
  CHECK(gradcheck(r, {x}) < 1e-6);
  CHECK(fp32_vs_fp64_error(g, {x}) < 1e-5);
  // BERT's GELU and ReLU, written out; the erf form differs from the tanh one by up to ~1e-3.
  std::vector<double> exact, rectified;
  for (double v : x.to_double_vector()) {
    exact.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
    rectified.push_back(v > 0 ? v : 0);
  }
  CHECK(relative_error(gelu(x, GeluForm::erf).to_double_vector(), exact) < 1e-15);
  CHECK(relative_error(gelu(x).to_double_vector(), exact) > 1e-5);
  CHECK(relu(x).to_double_vector() == rectified);
}

TEST_CASE("sum and mean") {
  Tensor x = random_f64({4, 6}, 6);
  ft::testing::OpFn s = [](const std::vector<Tensor>& v) { return sum(v[0]); };
  ft::testing::OpFn m = [](const std::vector<Tensor>& v) { return mean(v[0]); };
  CHECK(gradcheck(s, {x}) < 1e-6);
  CHECK(gradcheck(m, {x}) < 1e-6);
  CHECK(fp32_vs_fp64_error(m, {x}) < 1e-5);
  double total = 0;
  for (double v : x.to_double_vector()) total += v;
  CHECK(sum(x).item() == doctest::Approx(total).epsilon(1e-14));
  CHECK(mean(x).item() == doctest::Approx(total / 24).epsilon(1e-14));
  CHECK(sum(x).shape() == Shape{});
  CHECK_THROWS_WITH(mean(Tensor::zeros({0})), doctest::Contains("mean: tensor f32[0] on cpu is empty"));
}

TEST_CASE("elementwise errors name the op and the shapes") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  CHECK_THROWS_WITH(add(a, b), doctest::Contains("add: shapes [2, 3] and [4] do not broadcast"));
  CHECK_THROWS_WITH(mul(a, Tensor::zeros({2, 3}, DType::f64)),
                    doctest::Contains("mul: dtype mismatch: f32[2, 3] on cpu and f64[2, 3] on cpu"));
  float dummy[6];
  Tensor on_gpu = Tensor::from_blob(dummy, {2, 3}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(sub(a, on_gpu),
                    doctest::Contains("sub: device mismatch: f32[2, 3] on cpu and f32[2, 3] on cuda:0"));
  CHECK_THROWS_WITH(gelu(Tensor::zeros({2}, DType::i32)), doctest::Contains("gelu: dtype i32 is not supported"));
  CHECK_THROWS_WITH(relu(Tensor::zeros({2}, DType::i32)), doctest::Contains("relu: dtype i32 is not supported"));
  CHECK_THROWS_WITH(add_(a, b), doctest::Contains("add_: shapes [2, 3] and [4] differ"));
}
