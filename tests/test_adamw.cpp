// AdamW: steps match an independent implementation, weight decay is decoupled, frozen
// parameters get no state, a quadratic is minimised, and bad parameters are refused.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "framework/optim/adamw.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

// One parameter's AdamW, written from the paper's update with PyTorch's bias correction.
struct ReferenceAdamW {
  std::vector<double> p, m, v;
  int64_t t = 0;

  explicit ReferenceAdamW(std::vector<double> init) : p(std::move(init)), m(p.size(), 0.0), v(p.size(), 0.0) {}

  void step(const std::vector<double>& g, const AdamWOptions& o, double wd) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] -= o.lr * wd * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
};

Tensor param(const Shape& shape, uint64_t seed) { return random_f64(shape, seed).set_requires_grad(true); }

}  // namespace

TEST_CASE("adamw steps match an independent implementation in f64") {
  AdamWOptions options;
  options.lr = 0.01;
  options.beta1 = 0.8;
  options.beta2 = 0.95;
  options.eps = 1e-6;
  std::vector<Tensor> params = {param({3, 4}, 1), param({5}, 2), param({2, 2}, 3)};
  const std::vector<double> decays = {0.1, 0.1, 0.0};
  AdamW opt({{{params[0], params[1]}, 0.1}, {{params[2]}, 0.0}}, options);
  CHECK(opt.state_count() == 3);
  std::vector<ReferenceAdamW> ref;
  for (const Tensor& p : params) ref.emplace_back(p.to_double_vector());

  for (int step = 0; step < 6; ++step) {
    if (step == 3) {
      options.lr = 0.003;
      opt.set_lr(options.lr);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      // Parameter 1 has no gradient at step 2: it is skipped and its own step count lags.
      if (i == 1 && step == 2) continue;
      Tensor g = random_f64(params[i].shape(), 100 + 10 * step + i);
      params[i].set_grad(g);
      ref[i].step(g.to_double_vector(), options, decays[i]);
    }
    opt.step();
    opt.zero_grad();
  }
  CHECK(opt.step_count() == 6);
  for (size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    CHECK(!params[i].grad().defined());
    CHECK(opt.states()[i].step == ref[i].t);
    CHECK(testing::relative_error(params[i].to_double_vector(), ref[i].p) < 1e-12);
    CHECK(testing::relative_error(opt.states()[i].exp_avg.to_double_vector(), ref[i].m) < 1e-12);
    CHECK(testing::relative_error(opt.states()[i].exp_avg_sq.to_double_vector(), ref[i].v) < 1e-12);
  }
}

TEST_CASE("adamw weight decay is decoupled: a zero gradient shrinks p by exactly (1 - lr*wd)") {
  // With g = 0, Adam's own update is 0 / (0 + eps) = 0, so only the decay moves p. Coupled L2
  // decay would instead go through Adam's normalisation and move p by about lr per step.
  AdamWOptions options;
  options.lr = 0.1;
  for (DType dtype : {DType::f64, DType::f32}) {
    Tensor p = random_f64({6}, 4).to(dtype).set_requires_grad(true);
    std::vector<double> expected = p.to_double_vector();
    AdamW opt({{{p}, 0.5}}, options);
    CHECK(opt.states()[0].exp_avg.dtype() == dtype);
    for (int step = 0; step < 5; ++step) {
      p.set_grad(Tensor::zeros({6}, dtype));
      opt.step();
      for (double& e : expected) e *= dtype == DType::f64 ? 1 - 0.1 * 0.5 : double(float(1 - 0.1 * 0.5));
    }
    std::vector<double> got = p.to_double_vector();
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-6));
    if (dtype == DType::f64) CHECK(got == expected);
  }
}

TEST_CASE("adamw gives frozen parameters no state and never changes them") {
  Tensor trained = param({3}, 5), frozen = random_f64({4}, 6), frozen_later = param({2}, 7);
  std::vector<double> frozen_before = frozen.to_double_vector(), later_before = frozen_later.to_double_vector();
  AdamW opt({{{trained, frozen, frozen_later}, 0.01}});
  CHECK(opt.state_count() == 2);
  CHECK(opt.params()[0].impl() == trained.impl());
  CHECK(opt.params()[1].impl() == frozen_later.impl());

  frozen_later.set_requires_grad(false);
  for (const Tensor& p : {trained, frozen, frozen_later}) p.set_grad(Tensor::full(p.shape(), 1.0, DType::f64));
  std::vector<double> trained_before = trained.to_double_vector();
  opt.step();
  CHECK(trained.to_double_vector() != trained_before);
  CHECK(frozen.to_double_vector() == frozen_before);
  CHECK(frozen_later.to_double_vector() == later_before);
  CHECK(opt.states()[1].step == 0);
}

TEST_CASE("adamw minimises a quadratic through autograd") {
  Tensor target = Tensor::from_vector({1.5, -2.0, 0.25, 3.0}, {4});
  Tensor p = Tensor::zeros({4}).set_requires_grad(true);
  AdamWOptions options;
  options.lr = 0.1;
  AdamW opt({{{p}, 0.0}}, options);
  for (int step = 0; step < 400; ++step) {
    if (step == 200) opt.set_lr(0.01);
    Tensor diff = sub(p, target);
    sum(mul(diff, diff)).backward();
    opt.step();
    opt.zero_grad();
  }
  CHECK(testing::relative_error(p, target) < 1e-3);
}

TEST_CASE("adamw refuses bad parameters and options, naming what is wrong") {
  Tensor leaf = param({2, 3}, 8);
  Tensor computed = scale(leaf, 2.0);
  CHECK_THROWS_WITH(AdamW({{{leaf, computed}, 0.0}}),
                    doctest::Contains("adamw: parameter 1 of group 0 (f64[2, 3] on cpu) is not a leaf"));
  CHECK_THROWS_WITH(AdamW({{{leaf}, 0.0}, {{leaf}, 0.1}}),
                    doctest::Contains("adamw: parameter 0 of group 1 (f64[2, 3] on cpu) is listed twice"));
  Tensor half_param = Tensor::zeros({4}, DType::bf16).set_requires_grad(true).set_name("wte");
  CHECK_THROWS_WITH(AdamW({{{half_param}, 0.0}}),
                    doctest::Contains("adamw: parameter 0 of group 0 ('wte', bf16[4] on cpu) is not f32 or f64"));
  CHECK_THROWS_WITH(AdamW({{{leaf}, -0.1}}), doctest::Contains("adamw: group 0 has negative weight_decay"));
  AdamWOptions bad;
  bad.beta2 = 1.0;
  CHECK_THROWS_WITH(AdamW({{{leaf}, 0.0}}, bad), doctest::Contains("adamw: beta2 = 1 is outside [0, 1)"));

  // A gradient of the wrong shape is refused before any parameter changes.
  Tensor other = param({3}, 9);
  AdamW opt({{{other, leaf}, 0.0}});
  std::vector<double> before = other.to_double_vector();
  other.set_grad(Tensor::full({3}, 1.0, DType::f64));
  leaf.set_grad(Tensor::zeros({3, 2}, DType::f64));
  CHECK_THROWS_WITH(opt.step(), doctest::Contains("adamw: gradient f64[3, 2] on cpu does not match its parameter "
                                                  "f64[2, 3] on cpu"));
  CHECK(other.to_double_vector() == before);
  CHECK_THROWS_WITH(opt.set_lr(-1), doctest::Contains("adamw: lr = -1 is negative"));
}
