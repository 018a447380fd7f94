// dropout: the mask is a function of the generator's state (same seed, restored state ->
// same mask), its statistics, the gradient (mask times scale), and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "kernels/random/philox.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;

namespace {

// The mask scaled by the inverse of the keep probability, from the documented rule: with t =
// round(p * 65536), element i is kept iff the 16-bit number i % 8 of the Philox block at counter
// first + i / 8 (the low half of word (i % 8) / 2 for even i, its high half for odd i) is at
// least t, which happens with probability (65536 - t) / 65536.
std::vector<double> scaled_mask(const GeneratorState& state, int64_t n, double p) {
  const double t = std::round(static_cast<double>(static_cast<float>(p)) * 65536.0);
  std::vector<double> mask(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t word = kernels::philox4x32(state.seed, state.offset + i / 8).x[(i % 8) / 2];
    const uint32_t bits = i % 2 == 0 ? word & 0xFFFFu : word >> 16;
    mask[i] = bits >= t ? 65536.0 / (65536.0 - t) : 0.0;
  }
  return mask;
}

// An op for gradcheck and the fp32 comparison: every call draws the same mask.
testing::OpFn dropout_fn(Generator& gen, double p) {
  const GeneratorState start = gen.state();
  return [&gen, p, start](const std::vector<Tensor>& in) {
    gen.set_state(start);
    return dropout(in[0], p, gen);
  };
}

}  // namespace

TEST_CASE("dropout forward keeps elements by the generator's Philox counters") {
  Generator gen(11);
  gen.take(5);  // a non-zero starting counter
  const GeneratorState before = gen.state();
  Tensor x = random_f64({3, 7}, 1);
  Tensor y = dropout(x, 0.4, gen);
  CHECK(gen.state().offset == before.offset + 21);
  std::vector<double> mask = scaled_mask(before, 21, 0.4), xs = x.to_double_vector(), expected;
  for (size_t i = 0; i < mask.size(); ++i) expected.push_back(xs[i] * mask[i]);
  CHECK(testing::relative_error(y.to_double_vector(), expected) < 1e-15);
  Generator again(11);
  again.take(5);
  CHECK(testing::fp32_vs_fp64_error(dropout_fn(again, 0.4), {x}) < 1e-5);
}

TEST_CASE("dropout masks repeat for the same seed and a restored state, and differ otherwise") {
  Tensor x = Tensor::full({1000}, 1.0);
  Generator a(3), b(3);
  Tensor ya = dropout(x, 0.5, a);
  CHECK(dropout(x, 0.5, b).to_double_vector() == ya.to_double_vector());
  const GeneratorState saved = a.state();
  Tensor next = dropout(x, 0.5, a);
  CHECK(next.to_double_vector() != ya.to_double_vector());  // the generator moved on
  Generator c(99);
  c.set_state(saved);
  CHECK(dropout(x, 0.5, c).to_double_vector() == next.to_double_vector());
}

TEST_CASE("dropout keeps a fraction 1-p and preserves the mean in expectation") {
  // 200000 elements: above the kernel's threshold, so the parallel path runs too.
  const int64_t n = 200000;
  const double p = 0.3;
  Generator gen(5);
  std::vector<double> y = dropout(Tensor::full({n}, 1.0), p, gen).to_double_vector();
  double kept = 0, mean = 0;
  for (double v : y) {
    kept += v != 0;
    mean += v / n;
  }
  // Within 5 standard errors: the kept count is binomial, each output has variance p/(1-p).
  CHECK(std::abs(kept / n - (1 - p)) < 5 * std::sqrt(p * (1 - p) / n));
  CHECK(std::abs(mean - 1.0) < 5 * std::sqrt(p / (1 - p) / n));
}

TEST_CASE("dropout gradient is the mask times 1/(1-p)") {
  Generator gen(8);
  const GeneratorState before = gen.state();
  Tensor x = random_f64({4, 5}, 2).set_requires_grad(true);
  Tensor w = random_f64({4, 5}, 3);
  sum(mul(dropout(x, 0.25, gen), w)).backward();
  std::vector<double> mask = scaled_mask(before, 20, 0.25), ws = w.to_double_vector(), expected;
  for (size_t i = 0; i < mask.size(); ++i) expected.push_back(ws[i] * mask[i]);
  CHECK(testing::relative_error(x.grad().to_double_vector(), expected) < 1e-15);

  Generator fixed(9);
  CHECK(testing::gradcheck(dropout_fn(fixed, 0.25), {random_f64({4, 5}, 4)}) < 1e-6);
}

TEST_CASE("dropout with p = 0 returns its input and draws nothing") {
  Generator gen(1);
  Tensor x = random_f64({6}, 5);
  Tensor y = dropout(x, 0.0, gen);
  CHECK(y.impl() == x.impl());
  CHECK(gen.state().offset == 0);
}

TEST_CASE("dropout rounds p to 1/65536: a tiny p keeps everything, one within 2^-17 of 1 drops everything") {
  Generator gen(12);
  Tensor x = random_f64({37}, 7).set_requires_grad(true);
  // p < 2^-17 rounds to t = 0: every element is kept with scale 1, yet the counters are drawn.
  CHECK(dropout(x, 1e-6, gen).to_double_vector() == x.to_double_vector());
  CHECK(gen.state().offset == 37);
  // p > 1 - 2^-17 rounds to t = 65536: nothing is kept, not even a NaN, and nothing flows back.
  std::vector<double> with_nan = x.to_double_vector();
  with_nan[3] = std::nan("");
  Tensor y = dropout(Tensor::from_vector(with_nan, {37}), 1 - 1e-6, gen);
  CHECK(y.to_double_vector() == std::vector<double>(37, 0.0));
  sum(dropout(x, 1 - 1e-6, gen)).backward();
  CHECK(x.grad().to_double_vector() == std::vector<double>(37, 0.0));
  // p is rounded to the nearest 1/65536, not truncated (t = 32768 and 32769 here): the kept
  // elements' scale, 2 or 65536/32767, tells the thresholds apart.
  const GeneratorState before = gen.state();
  Tensor ones = Tensor::full({4000}, 1.0, DType::f64);
  for (double p : {0.5 - 0.4 / 65536, 0.5 + 0.6 / 65536}) {
    gen.set_state(before);
    CHECK(dropout(ones, p, gen).to_double_vector() == scaled_mask(before, 4000, p));
  }
}

TEST_CASE("dropout rejects bad p and inputs, naming the op and the shape") {
  Generator gen(1);
  Tensor x = random_f64({2, 3}, 6);
  CHECK_THROWS_WITH(dropout(x, 1.0, gen), doctest::Contains("dropout: p = 1 is outside [0, 1) (x [2, 3])"));
  CHECK_THROWS_WITH(dropout(x, -0.1, gen), doctest::Contains("dropout: p = -0.1 is outside [0, 1)"));
  CHECK_THROWS_WITH(dropout(x, std::nan(""), gen), doctest::Contains("is outside [0, 1)"));
  CHECK_THROWS_WITH(dropout(Tensor::zeros({2}, DType::i32), 0.5, gen),
                    doctest::Contains("dropout: x is i32[2] on cpu, expected a floating dtype"));
  CHECK(gen.state().offset == 0);  // failed calls draw nothing
}
