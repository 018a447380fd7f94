// matmul and linear: every transpose combination, batched and shared-weight forms, against a
// triple loop, finite differences and fp32; and the shape errors.
#include <doctest/doctest.h>

#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::fp32_vs_fp64_error;
using ft::testing::gradcheck;
using ft::testing::random_f64;
using ft::testing::relative_error;

namespace {

// C[b] = op(A[b]) op(B[b or shared]) with plain loops over explicit indices.
std::vector<double> naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector(), out;
  int64_t m = ta ? a.size(-1) : a.size(-2), k = ta ? a.size(-2) : a.size(-1);
  int64_t n = tb ? b.size(-2) : b.size(-1);
  int64_t batches = a.numel() / (m * k);
  for (int64_t p = 0; p < batches; ++p) {
    const double* A = va.data() + p * m * k;
    const double* B = vb.data() + (b.dim() == 2 ? 0 : p * k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t q = 0; q < k; ++q) acc += (ta ? A[q * m + i] : A[i * k + q]) * (tb ? B[j * k + q] : B[q * n + j]);
        out.push_back(acc);
      }
  }
  return out;
}

Shape matrix(Shape batch, int64_t rows, int64_t cols, bool transposed) {
  batch.push_back(transposed ? cols : rows);
  batch.push_back(transposed ? rows : cols);
  return batch;
}

}  // namespace

TEST_CASE("matmul: all transposes, batched and shared") {
  const int64_t m = 3, k = 4, n = 5;
  for (Shape batch : {Shape{}, Shape{2}, Shape{2, 3}})
    for (bool shared : {false, true})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          if (batch.empty() && shared) continue;
          CAPTURE(batch.size());
          CAPTURE(shared);
          CAPTURE(ta);
          CAPTURE(tb);
          Tensor a = random_f64(matrix(batch, m, k, ta), 1);
          Tensor b = random_f64(matrix(shared ? Shape{} : batch, k, n, tb), 2);
          ft::testing::OpFn f = [ta, tb](const std::vector<Tensor>& x) { return matmul(x[0], x[1], ta, tb); };
          CHECK(relative_error(f({a, b}).to_double_vector(), naive_matmul(a, b, ta, tb)) < 1e-14);
          CHECK(gradcheck(f, {a, b}) < 1e-6);
          CHECK(fp32_vs_fp64_error(f, {a, b}) < 1e-5);
        }
}

TEST_CASE("matmul in fp32 stays within 1e-5 of fp64 at a realistic size") {
  Tensor a = random_f64({64, 256}, 3), b = random_f64({256, 96}, 4);
  ft::testing::OpFn f = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  CHECK(fp32_vs_fp64_error(f, {a, b}) < 1e-5);
}

TEST_CASE("linear: x W^T + b") {
  Tensor x = random_f64({2, 3, 4}, 5), w = random_f64({6, 4}, 6), bias = random_f64({6}, 7);
  ft::testing::OpFn f = [](const std::vector<Tensor>& v) { return linear(v[0], v[1], v[2]); };
  CHECK(gradcheck(f, {x, w, bias}) < 1e-6);
  CHECK(fp32_vs_fp64_error(f, {x, w, bias}) < 1e-5);
  std::vector<double> expected = naive_matmul(x, w, false, true), vb = bias.to_double_vector();
  for (size_t i = 0; i < expected.size(); ++i) expected[i] += vb[i % 6];
  CHECK(relative_error(f({x, w, bias}).to_double_vector(), expected) < 1e-14);
  CHECK(linear(random_f64({4}, 8), w, Tensor()).shape() == Shape{6});
}

TEST_CASE("matmul and linear errors name the op and the shapes") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  CHECK_THROWS_WITH(matmul(a, b), doctest::Contains("matmul: inner dimensions differ: a [2, 3] has K=3, b [4, 5] has K=4"));
  CHECK_THROWS_WITH(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4})),
                    doctest::Contains("matmul: batch dimensions differ"));
  CHECK_THROWS_WITH(matmul(Tensor::zeros({3}), b), doctest::Contains("needs at least 2 dimensions"));
  CHECK_THROWS_WITH(matmul(a, Tensor::zeros({3, 2}, DType::f64)), doctest::Contains("matmul: dtype mismatch"));
  float dummy[6];
  CHECK_THROWS_WITH(matmul(a, Tensor::from_blob(dummy, {3, 2}, DType::f32, Device::cuda(0))),
                    doctest::Contains("matmul: device mismatch: f32[2, 3] on cpu and f32[3, 2] on cuda:0"));
  CHECK_THROWS_WITH(linear(Tensor::zeros({2, 3}), Tensor::zeros({5, 4}), Tensor()),
                    doctest::Contains("linear: x [2, 3] has last dimension 3, expected weight's in-features 4"));
  CHECK_THROWS_WITH(linear(Tensor::zeros({2, 4}), Tensor::zeros({5, 4}), Tensor::zeros({4})),
                    doctest::Contains("linear: bias has shape [4], expected [5]"));
}
