// Learning-rate schedules and gradient-norm clipping.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/optim/grad_norm.h"
#include "framework/optim/lr_schedule.h"
#include "tests/support/gradcheck.h"

using namespace ft;

TEST_CASE("warmup then cosine, linear or constant") {
  LrSchedule s{"cosine", 1.0, 0.1, 10, 110};
  CHECK(s.at(1) == doctest::Approx(0.1));
  CHECK(s.at(10) == doctest::Approx(1.0));
  CHECK(s.at(60) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(M_PI * 0.5))));
  CHECK(s.at(110) == doctest::Approx(0.1));
  CHECK(s.at(500) == doctest::Approx(0.1));  // past the end it stays at min_lr
  s.kind = "linear";
  CHECK(s.at(60) == doctest::Approx(0.55));
  CHECK(s.at(110) == doctest::Approx(0.1));
  s.kind = "constant";
  CHECK(s.at(5) == doctest::Approx(0.5));
  CHECK(s.at(100) == doctest::Approx(1.0));
  s.kind = "step";
  CHECK_THROWS_WITH(s.at(50), doctest::Contains("unknown learning-rate schedule 'step'"));
  CHECK(LrSchedule{"cosine", 2.0, 0.0, 0, 10}.at(1) == doctest::Approx(2.0 * 0.5 * (1 + std::cos(M_PI * 0.1))));
}

TEST_CASE("the global norm covers every gradient, and clipping keeps the direction") {
  Tensor a = ft::testing::random_f64({3, 4}, 1).set_requires_grad(true);
  Tensor b = ft::testing::random_f64({5}, 2).set_requires_grad(true);
  Tensor frozen = ft::testing::random_f64({2}, 3);
  sum(add(mul(a, a), Tensor::zeros({3, 4}, DType::f64))).backward();
  sum(mul(b, scale(b, 3.0))).backward();
  double expected = 0;
  for (double g : a.grad().to_double_vector()) expected += g * g;
  for (double g : b.grad().to_double_vector()) expected += g * g;
  expected = std::sqrt(expected);
  CHECK(global_grad_norm({a, b, frozen}) == doctest::Approx(expected).epsilon(1e-14));

  std::vector<double> before = a.grad().to_double_vector();
  CHECK(clip_grad_norm({a, b}, expected * 2) == doctest::Approx(expected));  // under the limit: unchanged
  CHECK(a.grad().to_double_vector() == before);
  CHECK(clip_grad_norm({a, b}, 1.0) == doctest::Approx(expected));
  CHECK(global_grad_norm({a, b}) == doctest::Approx(1.0).epsilon(1e-12));
  std::vector<double> after = a.grad().to_double_vector();
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i] == doctest::Approx(before[i] / expected).epsilon(1e-12));
  CHECK_THROWS_WITH(clip_grad_norm({a}, 0.0), doctest::Contains("max_norm must be positive"));
}

TEST_CASE("a non-finite norm is reported and nothing is scaled") {
  Tensor a = Tensor::from_vector({1.0, 2.0}, {2}).set_requires_grad(true);
  a.set_grad(Tensor::from_vector({INFINITY, 1.0}, {2}));
  CHECK(std::isinf(clip_grad_norm({a}, 1.0)));
  CHECK(a.grad().to_double_vector()[1] == 1.0);
}
