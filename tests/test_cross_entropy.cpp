// cross_entropy: gradients by finite differences, a plain-loop reference (forward and
// backward), ignore_index, numerical stability with huge logits, and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

struct Reference {
  double loss = 0;
  std::vector<double> dlogits;  // for dL/dloss = 1
};

// Straight from the definition, in double: softmax by exp / sum, no max subtraction (fine for
// the moderate logits it is given).
Reference naive_cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets, int ignore_index) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  std::vector<double> x = logits.to_double_vector();
  Reference r;
  r.dlogits.assign(rows * vocab, 0.0);
  int64_t count = 0;
  for (int32_t t : targets) count += t != ignore_index;
  for (int64_t n = 0; n < rows; ++n) {
    if (targets[n] == ignore_index) continue;
    double z = 0;
    for (int64_t v = 0; v < vocab; ++v) z += std::exp(x[n * vocab + v]);
    r.loss += -std::log(std::exp(x[n * vocab + targets[n]]) / z) / count;
    for (int64_t v = 0; v < vocab; ++v)
      r.dlogits[n * vocab + v] = (std::exp(x[n * vocab + v]) / z - (v == targets[n])) / count;
  }
  return r;
}

testing::OpFn cross_entropy_fn(int ignore_index) {
  return [ignore_index](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], ignore_index); };
}

}  // namespace

TEST_CASE("cross_entropy gradient matches finite differences") {
  Tensor targets = Tensor::from_ints({3, -100, 0, 6}, {4});
  CHECK(testing::gradcheck(cross_entropy_fn(-100), {random_f64({4, 7}, 1), targets}) < 1e-6);
}

TEST_CASE("cross_entropy forward and backward match the definition, in f64 and f32") {
  SUBCASE("small, with one ignored row") {
    std::vector<int32_t> t = {2, 5, -100, 0};
    Tensor targets = Tensor::from_ints(t, {4});
    Tensor logits = random_f64({4, 7}, 2).set_requires_grad(true);
    Tensor loss = cross_entropy(logits, targets);
    CHECK(loss.shape() == Shape{});
    scale(loss, 3.0).backward();  // dL/dloss = 3 scales the gradient
    Reference r = naive_cross_entropy(logits, t, -100);
    CHECK(std::abs(loss.item() - r.loss) < 1e-12 * r.loss);
    for (double& d : r.dlogits) d *= 3.0;
    CHECK(testing::relative_error(logits.grad().to_double_vector(), r.dlogits) < 1e-12);
    CHECK(testing::fp32_vs_fp64_error(cross_entropy_fn(-100), {logits.detach(), targets}) < 1e-5);
  }
  SUBCASE("large enough for the parallel path") {
    const int64_t rows = 64, vocab = 1000;
    std::vector<int32_t> t;
    for (int64_t n = 0; n < rows; ++n) t.push_back(n % 5 == 0 ? -1 : static_cast<int32_t>((n * 37) % vocab));
    Tensor targets = Tensor::from_ints(t, {rows});
    Tensor logits = random_f64({rows, vocab}, 3).set_requires_grad(true);
    Tensor loss = cross_entropy(logits, targets, -1);
    loss.backward();
    Reference r = naive_cross_entropy(logits, t, -1);
    CHECK(std::abs(loss.item() - r.loss) < 1e-12 * r.loss);
    CHECK(testing::relative_error(logits.grad().to_double_vector(), r.dlogits) < 1e-12);
  }
}

TEST_CASE("cross_entropy ignores rows whose target is ignore_index") {
  Tensor logits = random_f64({4, 5}, 4);
  // ignore_index may be a valid class: rows with target 0 drop out of the mean.
  Tensor loss = cross_entropy(logits, Tensor::from_ints({0, 3, 0, 1}, {4}), 0);
  Tensor kept = cross_entropy(slice(logits, 0, 1, 2), Tensor::from_ints({3}, {1}), 0);
  Tensor kept2 = cross_entropy(slice(logits, 0, 3, 4), Tensor::from_ints({1}, {1}), 0);
  CHECK(loss.item() == doctest::Approx((kept.item() + kept2.item()) / 2).epsilon(1e-14));

  Tensor leaf = random_f64({3, 5}, 5).set_requires_grad(true);
  Tensor none = cross_entropy(leaf, Tensor::from_ints({-100, -100, -100}, {3}));
  CHECK(none.item() == 0.0);
  none.backward();
  for (double g : leaf.grad().to_double_vector()) CHECK(g == 0.0);
}

TEST_CASE("cross_entropy stays finite with huge logits") {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor logits = Tensor::from_vector({1000, 0, -1000, -1000, 1000, 999}, {2, 3}, dtype).set_requires_grad(true);
    Tensor loss = cross_entropy(logits, Tensor::from_ints({1, 2}, {2}));
    // Row 0: lse = 1000, loss 1000. Row 1: lse = 1000 + log(1 + e^-1), loss 1 + log(1 + e^-1).
    const double expected = (1000 + 1 + std::log1p(std::exp(-1.0))) / 2;
    CHECK(loss.item() == doctest::Approx(expected).epsilon(dtype == DType::f32 ? 1e-6 : 1e-14));
    loss.backward();
    for (double g : logits.grad().to_double_vector()) CHECK(std::isfinite(g));
    // Row 0's softmax is one-hot on class 0: gradient (1 - 0) / 2 there, -1/2 at the target.
    std::vector<double> g = logits.grad().to_double_vector();
    CHECK(g[0] == doctest::Approx(0.5));
    CHECK(g[1] == doctest::Approx(-0.5));
  }
}

TEST_CASE("cross_entropy rejects bad targets and inputs, naming the op and the shapes") {
  Tensor logits = random_f64({4, 7}, 6);
  CHECK_THROWS_WITH(
      cross_entropy(logits, Tensor::from_ints({0, 1, 7, 2}, {4})),
      doctest::Contains("cross_entropy: target 7 at position 2 is out of range [0, 7) for logits [4, 7]"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_ints({0, -1, 3, 2}, {4})),
                    doctest::Contains("cross_entropy: target -1 at position 1 is out of range [0, 7)"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_ints({0, 1, 2}, {3})),
                    doctest::Contains("cross_entropy: targets has shape [3], expected [4]"));
  CHECK_THROWS_WITH(cross_entropy(random_f64({4, 7, 1}, 7), Tensor::from_ints({0, 1, 2, 3}, {4})),
                    doctest::Contains("cross_entropy: logits has shape [4, 7, 1], expected 2 dimensions"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_vector({0, 1, 2, 3}, {4})),
                    doctest::Contains("cross_entropy: targets is f32[4] on cpu, expected dtype i32"));
  CHECK_THROWS_WITH(cross_entropy(Tensor::zeros({4, 7}, DType::i32), Tensor::from_ints({0, 1, 2, 3}, {4})),
                    doctest::Contains("cross_entropy: logits is i32[4, 7] on cpu, expected a floating dtype"));
  int32_t blob[4] = {0, 1, 2, 3};
  CHECK_THROWS_WITH(
      cross_entropy(logits, Tensor::from_blob(blob, {4}, DType::i32, Device::cuda(0))),
      doctest::Contains("cross_entropy: device mismatch: logits f64[4, 7] on cpu and targets i32[4] on cuda:0"));
}
