// The autograd tape: a value used twice gets both gradients, leaves accumulate across passes,
// frozen parameters get nothing, no-grad scopes record nothing, and misuse is a clear error.
#include <doctest/doctest.h>

#include "framework/autograd.h"
#include "framework/ops.h"

using namespace ft;

TEST_CASE("a value used twice receives the sum of both gradients") {
  Tensor x = Tensor::from_vector({1.5, -2.0, 3.0}, {3}, DType::f64).set_requires_grad(true);
  // y = sum(x * x + 3 x): dy/dx = 2x + 3, through three uses of x.
  Tensor y = sum(add(mul(x, x), scale(x, 3.0)));
  y.backward();
  CHECK(x.grad().to_double_vector() == std::vector<double>{6.0, -1.0, 9.0});
}

TEST_CASE("backward from a tensor with its upstream gradient equals backward from sum(tensor * upstream)") {
  Tensor x = Tensor::from_vector({1.5, -2.0, 3.0}, {3}, DType::f64).set_requires_grad(true);
  const Tensor g = Tensor::from_vector({0.5, 2.0, -1.0}, {3}, DType::f64);
  mul(x, x).backward(g);  // d/dx sum(x^2 * g) = 2 x g
  CHECK(x.grad().to_double_vector() == std::vector<double>{1.5, -8.0, -6.0});
  x.zero_grad();
  sum(mul(mul(x, x), g)).backward();
  CHECK(x.grad().to_double_vector() == std::vector<double>{1.5, -8.0, -6.0});

  x.zero_grad();
  x.backward(g);  // a leaf takes the upstream gradient as is
  CHECK(x.grad().to_double_vector() == g.to_double_vector());
  CHECK_THROWS_WITH(mul(x, x).backward(Tensor::zeros({2}, DType::f64)),
                    doctest::Contains("does not match the tensor"));
  CHECK_THROWS_WITH(mul(x, x).backward(), doctest::Contains("pass the upstream gradient"));
}

TEST_CASE("gradients flow through a diamond and accumulate across backward passes") {
  Tensor w = Tensor::from_vector({2.0}, {1}, DType::f64).set_requires_grad(true);
  auto loss = [&] {
    Tensor a = scale(w, 3.0);  // a = 3w
    Tensor b = mul(a, a);      // b = 9 w^2
    return sum(add(a, b));     // 3w + 9w^2: d/dw = 3 + 18 w = 39
  };
  loss().backward();
  CHECK(w.grad().item() == doctest::Approx(39.0));
  loss().backward();  // micro-batch accumulation: gradients add
  CHECK(w.grad().item() == doctest::Approx(78.0));
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("frozen parameters get no gradient and stop nothing else") {
  Tensor frozen = Tensor::from_vector({1.0, 2.0}, {2}, DType::f64).set_requires_grad(false);
  Tensor trained = Tensor::from_vector({3.0, 4.0}, {2}, DType::f64).set_requires_grad(true);
  sum(mul(frozen, trained)).backward();
  CHECK_FALSE(frozen.grad().defined());
  CHECK(trained.grad().to_double_vector() == std::vector<double>{1.0, 2.0});
  // With every input frozen nothing is recorded, and backward explains why.
  Tensor loss = sum(mul(frozen, frozen));
  CHECK_FALSE(loss.requires_grad());
  CHECK_THROWS_WITH(loss.backward(), doctest::Contains("does not require grad"));
}

TEST_CASE("no-grad scopes record nothing and restore the previous mode") {
  Tensor w = Tensor::from_vector({1.0}, {1}, DType::f64).set_requires_grad(true);
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    Tensor y = scale(w, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    {
      NoGradGuard nested;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());
  }
  CHECK(grad_enabled());
  CHECK(scale(w, 2.0).requires_grad());
}

TEST_CASE("views and detach route gradients correctly") {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64).set_requires_grad(true);
  // Only the middle column reaches the loss, through a transpose and a slice.
  Tensor col = slice(transpose(x, 0, 1), 0, 1, 2);
  sum(scale(col, 2.0)).backward();
  CHECK(x.grad().to_double_vector() == std::vector<double>{0, 2, 0, 0, 2, 0});
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == x.storage());
}

TEST_CASE("backward errors are clear") {
  Tensor w = Tensor::from_vector({1.0, 2.0}, {2}, DType::f64).set_requires_grad(true);
  CHECK_THROWS_WITH(scale(w, 2.0).backward(), doctest::Contains("expected a one-element loss, got shape [2]"));
  Tensor loss = sum(mul(w, w));
  loss.backward();
  CHECK_THROWS_WITH(loss.backward(), doctest::Contains("freed by an earlier backward"));
  CHECK_THROWS_WITH(scale(w, 1.0).set_requires_grad(false), doctest::Contains("only leaves"));
  Tensor ids = Tensor::from_ints({1, 2}, {2});
  CHECK_THROWS_WITH(ids.set_requires_grad(true), doctest::Contains("not floating point"));
}

TEST_CASE("the graph is freed after backward") {
  Tensor w = Tensor::from_vector({1.0, 2.0}, {2}, DType::f64).set_requires_grad(true);
  Tensor h = mul(w, w);
  std::weak_ptr<Node> node = h.grad_fn();
  Tensor loss = sum(h);
  loss.backward();
  // The node still exists (h holds it) but its saved inputs are gone.
  REQUIRE(!node.expired());
  CHECK(node.lock()->inputs.empty());
}
