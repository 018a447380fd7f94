// lm_head_cross_entropy on the CPU: the loss and both gradients against the unfused
// cross_entropy(linear(h, weight)) in f64 for chunk sizes that divide the rows, do not, and
// exceed them; ignored targets (some, all); finite differences; the no-grad and frozen-weight
// paths; fp32 against fp64; and the input errors.
#include <doctest/doctest.h>

#include <random>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;
using ft::testing::relative_error;

namespace {

constexpr int kIgnore = -100;

// Random targets in [0, vocab), every 4th row (from row 1) ignored.
Tensor random_targets(int64_t rows, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 4 == 1 ? kIgnore : static_cast<int32_t>(pick(rng));
  return Tensor::from_ints(targets, {rows});
}

struct Run {
  Tensor loss, dh, dw;
};

// The loss of `loss_fn` on fresh leaves of h and weight, and their gradients for an upstream
// gradient of 3 (so a backward that ignored it would show).
template <class LossFn>
Run run(const Tensor& h, const Tensor& weight, LossFn loss_fn) {
  Tensor hl = h.detach().set_requires_grad(true), wl = weight.detach().set_requires_grad(true);
  Tensor loss = loss_fn(hl, wl);
  scale(loss, 3.0).backward();
  return {loss, hl.grad(), wl.grad()};
}

Run fused(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t chunk_rows) {
  return run(h, weight, [&](const Tensor& x, const Tensor& w) {
    return lm_head_cross_entropy(x, w, targets, kIgnore, chunk_rows);
  });
}

Run unfused(const Tensor& h, const Tensor& weight, const Tensor& targets) {
  return run(h, weight,
             [&](const Tensor& x, const Tensor& w) { return cross_entropy(linear(x, w, Tensor()), targets, kIgnore); });
}

void check_matches_unfused(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t chunk_rows) {
  CAPTURE(chunk_rows);
  const Run got = fused(h, weight, targets, chunk_rows), expected = unfused(h, weight, targets);
  CHECK(got.loss.dtype() == h.dtype());
  CHECK(got.loss.shape() == Shape{});
  CHECK(std::abs(got.loss.item() - expected.loss.item()) <= 1e-12 * std::abs(expected.loss.item()));
  CHECK(relative_error(got.dh, expected.dh) < 1e-12);
  CHECK(relative_error(got.dw, expected.dw) < 1e-12);
}

testing::OpFn lm_head_fn(const Tensor& targets, int64_t chunk_rows) {
  return [targets, chunk_rows](const std::vector<Tensor>& in) {
    return lm_head_cross_entropy(in[0], in[1], targets, kIgnore, chunk_rows);
  };
}

}  // namespace

TEST_CASE("lm_head_cross_entropy equals cross_entropy(linear) in f64 for every chunk size") {
  const int64_t rows = 10, features = 6, vocab = 13;
  const Tensor h = random_f64({rows, features}, 1), weight = random_f64({vocab, features}, 2);
  const Tensor targets = random_targets(rows, vocab, 3);
  // 3 and 4 leave a short last chunk; 10 is one chunk; 64 is more than the rows; 0 automatic.
  for (int64_t chunk_rows : {1, 3, 4, 10, 64, 0}) check_matches_unfused(h, weight, targets, chunk_rows);
}

TEST_CASE("lm_head_cross_entropy equals cross_entropy(linear) on rows large enough for the parallel kernel") {
  const int64_t rows = 100, features = 32, vocab = 1000;
  const Tensor h = random_f64({rows, features}, 4), weight = scale(random_f64({vocab, features}, 5), 0.3);
  const Tensor targets = random_targets(rows, vocab, 6);
  for (int64_t chunk_rows : {7, 64}) check_matches_unfused(h, weight, targets, chunk_rows);
}

TEST_CASE("lm_head_cross_entropy's automatic chunks cover every row") {
  // In f64 at most 667 rows of 50257 fit the automatic 256 MiB buffer: 700 rows take 2 chunks.
  const int64_t rows = 700, features = 4, vocab = 50257;
  const Tensor h = random_f64({rows, features}, 30), weight = random_f64({vocab, features}, 31);
  check_matches_unfused(h, weight, random_targets(rows, vocab, 32), 0);
}

TEST_CASE("lm_head_cross_entropy gradients match finite differences") {
  const Tensor targets = random_targets(5, 7, 7);
  for (int64_t chunk_rows : {2, 0}) {
    CAPTURE(chunk_rows);
    CHECK(testing::gradcheck(lm_head_fn(targets, chunk_rows), {random_f64({5, 3}, 8), random_f64({7, 3}, 9)}) < 1e-6);
  }
}

TEST_CASE("lm_head_cross_entropy with every target ignored: loss 0 and zero gradients") {
  const Tensor targets = Tensor::from_ints({kIgnore, kIgnore, kIgnore}, {3});
  const Run r = fused(random_f64({3, 4}, 10), random_f64({6, 4}, 11), targets, 2);
  CHECK(r.loss.item() == 0.0);
  for (double g : r.dh.to_double_vector()) CHECK(g == 0.0);
  for (double g : r.dw.to_double_vector()) CHECK(g == 0.0);
}

TEST_CASE("lm_head_cross_entropy without gradients gives the same loss and records nothing") {
  const Tensor h = random_f64({9, 5}, 12), weight = random_f64({11, 5}, 13);
  const Tensor targets = random_targets(9, 11, 14);
  const double with_grad = fused(h, weight, targets, 4).loss.item();
  SUBCASE("under NoGradGuard") {
    Tensor hl = h.detach().set_requires_grad(true);
    NoGradGuard no_grad;
    const Tensor loss = lm_head_cross_entropy(hl, weight, targets, kIgnore, 4);
    CHECK(!loss.grad_fn());
    CHECK(loss.item() == with_grad);
  }
  SUBCASE("on inputs that require no gradient") {
    const Tensor loss = lm_head_cross_entropy(h, weight, targets, kIgnore, 4);
    CHECK(!loss.grad_fn());
    CHECK(loss.item() == with_grad);
  }
}

TEST_CASE("lm_head_cross_entropy with a frozen weight gives h its gradient only") {
  const Tensor h = random_f64({6, 4}, 15), weight = random_f64({9, 4}, 16);
  const Tensor targets = random_targets(6, 9, 17);
  Tensor hl = h.detach().set_requires_grad(true);
  lm_head_cross_entropy(hl, weight, targets, kIgnore, 4).backward();
  Tensor hr = h.detach().set_requires_grad(true);
  cross_entropy(linear(hr, weight, Tensor()), targets, kIgnore).backward();
  CHECK(!weight.grad().defined());
  CHECK(relative_error(hl.grad(), hr.grad()) < 1e-12);
}

TEST_CASE("lm_head_cross_entropy in f32 is close to f64") {
  const Tensor targets = random_targets(40, 300, 18);
  CHECK(testing::fp32_vs_fp64_error(lm_head_fn(targets, 16), {random_f64({40, 24}, 19), random_f64({300, 24}, 20)}) <
        1e-5);
}

TEST_CASE("lm_head_cross_entropy rejects bad targets and inputs, naming the op and the shapes") {
  const Tensor h = random_f64({4, 3}, 21), weight = random_f64({7, 3}, 22);
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, weight, Tensor::from_ints({0, 1, 7, 2}, {4})),
                    doctest::Contains("lm_head_cross_entropy: target 7 at position 2 is out of range [0, 7) for a "
                                      "weight of 7 rows (ignore_index -100)"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, weight, Tensor::from_ints({0, -1, 3, 2}, {4})),
                    doctest::Contains("lm_head_cross_entropy: target -1 at position 1 is out of range [0, 7)"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, random_f64({7, 2}, 23), Tensor::from_ints({0, 1, 2, 3}, {4})),
                    doctest::Contains("lm_head_cross_entropy: h [4, 3] has 3 features, expected the weight's 2"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, weight, Tensor::from_ints({0, 1, 2}, {3})),
                    doctest::Contains("lm_head_cross_entropy: targets has shape [3], expected [4]"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(random_f64({4, 3, 1}, 24), weight, Tensor::from_ints({0, 1, 2, 3}, {4})),
                    doctest::Contains("lm_head_cross_entropy: h has shape [4, 3, 1], expected 2 dimensions"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, weight.to(DType::f32), Tensor::from_ints({0, 1, 2, 3}, {4})),
                    doctest::Contains("lm_head_cross_entropy: dtype mismatch"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, random_f64({0, 3}, 25), Tensor::from_ints({kIgnore}, {1})),
                    doctest::Contains("lm_head_cross_entropy: weight [0, 3] has no rows"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(h, weight, Tensor::from_ints({0, 1, 2, 3}, {4}), kIgnore, -1),
                    doctest::Contains("lm_head_cross_entropy: chunk_rows is -1"));
}
