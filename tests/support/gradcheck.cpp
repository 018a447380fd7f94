#include "tests/support/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "framework/autograd.h"

namespace ft::testing {

double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  FT_CHECK(a.size() == b.size(), "relative_error: sizes ", a.size(), " and ", b.size(), " differ");
  double diff = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  double denom = std::sqrt(std::max(na, nb));
  return denom == 0 ? 0 : std::sqrt(diff) / denom;
}

double relative_error(const Tensor& a, const Tensor& b) {
  FT_CHECK(a.shape() == b.shape(), "relative_error: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()));
  return relative_error(a.to_double_vector(), b.to_double_vector());
}

Tensor random_f64(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen, DType::f64);
}

double gradcheck(const OpFn& f, std::vector<Tensor> inputs, double step) {
  for (Tensor& x : inputs) {
    x = x.clone();  // fresh leaves, so earlier gradients cannot leak in
    if (is_floating(x.dtype())) {
      FT_CHECK(x.dtype() == DType::f64, "gradcheck: floating inputs must be f64, got ", describe(x));
      x.set_requires_grad(true);
    }
  }
  // L = sum(f(x) * w) with a fixed random w weighs every output element differently.
  Tensor out = f(inputs);
  Tensor w = random_f64(out.shape(), 12345);
  sum(mul(out, w)).backward();

  NoGradGuard no_grad;
  auto loss = [&]() { return sum(mul(f(inputs), w)).item(); };
  double worst = 0;
  for (Tensor& x : inputs) {
    if (!is_floating(x.dtype())) continue;
    FT_CHECK(x.grad().defined(), "gradcheck: no gradient reached an input of shape ", shape_str(x.shape()));
    std::vector<double> analytic = x.grad().to_double_vector();
    std::vector<double> numeric(x.numel());
    double* p = x.data<double>();  // the leaves are contiguous clones
    for (int64_t i = 0; i < x.numel(); ++i) {
      double saved = p[i];
      p[i] = saved + step;
      double plus = loss();
      p[i] = saved - step;
      double minus = loss();
      p[i] = saved;
      numeric[i] = (plus - minus) / (2 * step);
    }
    worst = std::max(worst, relative_error(analytic, numeric));
  }
  return worst;
}

double fp32_vs_fp64_error(const OpFn& f, const std::vector<Tensor>& inputs64) {
  std::vector<Tensor> inputs32;
  for (const Tensor& x : inputs64) inputs32.push_back(is_floating(x.dtype()) ? x.to(DType::f32) : x);
  NoGradGuard no_grad;
  return relative_error(f(inputs32), f(inputs64));
}

}  // namespace ft::testing
