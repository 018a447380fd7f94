// lm_head_cross_entropy on CUDA against the unfused cross_entropy(linear(h, W)) on the CPU in
// f64 from the same inputs: the loss and both gradients for a random upstream gradient, in f32
// (TF32 off), bf16 and f16, at a GPT-2 shape (2048 rows, C = 768, V = 50257) and odd ones, with
// ignored rows and chunk sizes that do not divide the rows. Also: every row ignored, no-grad
// and frozen-weight runs, a target out of range (NaN), the same bits on every run, and the
// errors. Allocations are poisoned, so an element a kernel never writes is NaN.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

constexpr int kIgnore = -100;

// Random targets in [0, vocab), every 5th row (from row 2) ignored.
std::vector<int32_t> random_targets(int64_t rows, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 5 == 2 ? kIgnore : static_cast<int32_t>(pick(rng));
  return targets;
}

// h ~ N(0, 1) and W ~ N(0, 1.5 / sqrt(C)), so logits have a standard deviation near 1.5, as a
// trained GPT-2's do; rounded to `dtype`, the same values on both devices.
struct Inputs {
  Twin h, weight;
  std::vector<int32_t> targets;
};

Inputs random_inputs(int64_t rows, int64_t features, int64_t vocab, DType dtype, uint64_t seed) {
  return {random_twin({rows, features}, dtype, seed),
          random_twin({vocab, features}, dtype, seed + 1, 1.5 / std::sqrt(features)),
          random_targets(rows, vocab, seed + 2)};
}

struct Result {
  Tensor loss, dh, dw;
};

// The loss and the gradients of h and W (fresh leaves; W frozen when asked) for an upstream
// gradient `upstream`: backward() from upstream * loss, through every node (the unfused form
// is a chain of two).
template <class LossFn>
Result run(const Tensor& h, const Tensor& weight, double upstream, LossFn loss_fn, bool frozen_weight = false) {
  Tensor hl = h.clone().set_requires_grad(true), wl = weight.clone().set_requires_grad(!frozen_weight);
  const Tensor loss = loss_fn(hl, wl);
  REQUIRE(loss.grad_fn());
  scale(loss, upstream).backward();
  return {loss.detach(), hl.grad(), wl.grad()};
}

Result run_fused(const Tensor& h, const Tensor& weight, const std::vector<int32_t>& targets, int64_t chunk_rows,
                 double upstream) {
  const Tensor t = Tensor::from_ints(targets, {h.size(0)}, h.device());
  return run(h, weight, upstream,
             [&](const Tensor& x, const Tensor& w) { return lm_head_cross_entropy(x, w, t, kIgnore, chunk_rows); });
}

Result run_unfused(const Tensor& h, const Tensor& weight, const std::vector<int32_t>& targets, double upstream) {
  const Tensor t = Tensor::from_ints(targets, {h.size(0)}, h.device());
  return run(h, weight, upstream,
             [&](const Tensor& x, const Tensor& w) { return cross_entropy(linear(x, w, Tensor()), t, kIgnore); });
}

// The loss is computed in fp32 from logits rounded to the dtype: about one rounding of a
// logit (2^-9 in bf16, 2^-12 in f16) in each row's loss, averaged over the rows.
double loss_bound(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return 2e-3;
    case DType::f16:
      return 5e-4;
    default:
      return 1e-5;
  }
}

void check_close(const char* what, const Tensor& got, const Tensor& expected, DType dtype) {
  CAPTURE(what);
  REQUIRE(got.dtype() == dtype);
  REQUIRE(got.device() == kGpu);
  testing::check_close(got, expected, tolerance(dtype), tolerance(dtype));
}

void check_against_cpu(int64_t rows, int64_t features, int64_t vocab, DType dtype, int64_t chunk_rows, uint64_t seed) {
  CAPTURE(rows);
  CAPTURE(features);
  CAPTURE(vocab);
  CAPTURE(dtype_name(dtype));
  CAPTURE(chunk_rows);
  const Inputs in = random_inputs(rows, features, vocab, dtype, seed);
  const double upstream = 0.75;
  const Result gpu = run_fused(in.h.gpu, in.weight.gpu, in.targets, chunk_rows, upstream);
  const Result cpu = run_unfused(in.h.cpu, in.weight.cpu, in.targets, upstream);
  CHECK(gpu.loss.dtype() == DType::f32);
  CHECK(gpu.loss.device() == kGpu);
  const double expected = cpu.loss.item();
  CHECK(std::isfinite(gpu.loss.item()));
  CHECK(std::abs(gpu.loss.item() - expected) <= loss_bound(dtype) * std::max(1.0, std::abs(expected)));
  check_close("dh", gpu.dh, cpu.dh, dtype);
  check_close("dW", gpu.dw, cpu.dw, dtype);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

}  // namespace

TEST_CASE("lm_head_cross_entropy on CUDA matches cross_entropy(linear) on the CPU at a GPT-2 shape") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  // f32's automatic chunks are 2 x 1024 rows of 50257 (at most 1335 fit 256 MiB); 768 and
  // 1000 do not divide 2048.
  check_against_cpu(2048, 768, 50257, DType::f32, 0, 1);
  check_against_cpu(2048, 768, 50257, DType::bf16, 768, 2);
  check_against_cpu(2048, 768, 50257, DType::f16, 1000, 3);
  cuda::set_poison_allocations(false);
}

TEST_CASE("lm_head_cross_entropy on CUDA matches the CPU at odd shapes") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  struct Case {
    int64_t rows, features, vocab;
    int64_t chunk_rows;
  };
  // A vocabulary of 1000 + 3 and of 1025 (tails of the row loops), 5 rows in chunks of 2, one
  // row of a one-word vocabulary (loss and gradients exactly 0), 300 rows of 3 words.
  const Case cases[] = {{5, 64, 1003, 2}, {5, 64, 1003, 0}, {37, 48, 1025, 10}, {1, 3, 1, 1}, {300, 17, 3, 64}};
  uint64_t seed = 10;
  for (const Case& c : cases)
    for (DType dtype : kGpuDTypes) check_against_cpu(c.rows, c.features, c.vocab, dtype, c.chunk_rows, seed += 3);
  cuda::set_poison_allocations(false);
}

// On CUDA the logits buffer's rows are padded to a multiple of 64 elements, left unwritten
// (NaN under poisoning): the products must skip the padding (n = V, k = V with the padded
// stride) and the loss kernel must neither read nor write it. Vocabularies just below and above
// a multiple of 64 and GPT-2's, in several chunks, in every dtype.
TEST_CASE("lm_head_cross_entropy on CUDA: vocabularies that are not a multiple of the padded row") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  uint64_t seed = 90;
  for (int64_t vocab : {63, 65, 50257})
    for (DType dtype : kGpuDTypes) check_against_cpu(11, 40, vocab, dtype, 4, seed += 3);
  cuda::set_poison_allocations(false);
}

TEST_CASE("lm_head_cross_entropy on CUDA with every row ignored: loss 0 and zero gradients") {
  cuda::set_poison_allocations(true);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    const Inputs in = random_inputs(7, 16, 100, dtype, 40);
    const Result r = run_fused(in.h.gpu, in.weight.gpu, std::vector<int32_t>(7, kIgnore), 3, 1.0);
    CHECK(r.loss.item() == 0.0);
    for (double v : r.dh.to_double_vector()) REQUIRE(v == 0.0);
    for (double v : r.dw.to_double_vector()) REQUIRE(v == 0.0);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("lm_head_cross_entropy on CUDA gives the same bits on every run, with or without gradients") {
  cuda::set_poison_allocations(true);
  const Inputs in = random_inputs(2048, 768, 50257, DType::bf16, 50);
  const Result first = run_fused(in.h.gpu, in.weight.gpu, in.targets, 1000, 1.0);
  const Result second = run_fused(in.h.gpu, in.weight.gpu, in.targets, 1000, 1.0);
  CHECK(same_bytes(first.loss, second.loss));
  CHECK(same_bytes(first.dh, second.dh));
  CHECK(same_bytes(first.dw, second.dw));
  NoGradGuard no_grad;  // the loss alone: the same row losses, summed in the same order
  const Tensor loss =
      lm_head_cross_entropy(in.h.gpu, in.weight.gpu, Tensor::from_ints(in.targets, {2048}, kGpu), kIgnore, 1000);
  CHECK(!loss.grad_fn());
  CHECK(same_bytes(loss, first.loss));
  cuda::set_poison_allocations(false);
}

TEST_CASE("lm_head_cross_entropy on CUDA: backward() with a frozen weight fills h's gradient only") {
  cuda::set_poison_allocations(true);
  const Inputs in = random_inputs(300, 64, 1000, DType::bf16, 60);
  std::vector<Tensor> grads;
  for (const Tensor& h : {in.h.gpu, in.h.cpu}) {
    const Tensor weight = h.device().is_cuda() ? in.weight.gpu : in.weight.cpu;
    Tensor hl = h.clone().set_requires_grad(true);
    const Tensor targets = Tensor::from_ints(in.targets, {300}, h.device());
    if (h.device().is_cuda())
      lm_head_cross_entropy(hl, weight, targets, kIgnore, 128).backward();
    else
      cross_entropy(linear(hl, weight, Tensor()), targets, kIgnore).backward();
    CHECK(!weight.grad().defined());
    grads.push_back(hl.grad());
  }
  REQUIRE(grads[0].defined());
  check_close("h.grad", grads[0], grads[1], DType::bf16);
  cuda::set_poison_allocations(false);
}

TEST_CASE("lm_head_cross_entropy on CUDA: a target out of range gives a NaN loss (it is not checked on the host)") {
  const Inputs in = random_inputs(2, 8, 10, DType::f32, 70);
  for (int32_t bad : {10, -1, 1000}) {
    CAPTURE(bad);
    const Result r = run_fused(in.h.gpu, in.weight.gpu, {3, bad}, 0, 1.0);
    CHECK(std::isnan(r.loss.item()));
  }
}

TEST_CASE("lm_head_cross_entropy on CUDA refuses inputs on different devices and f64") {
  const Inputs in = random_inputs(2, 8, 10, DType::f32, 80);
  CHECK_THROWS_WITH(lm_head_cross_entropy(in.h.gpu, in.weight.gpu, Tensor::from_ints({1, 2}, {2})),
                    doctest::Contains("lm_head_cross_entropy: device mismatch"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(in.h.gpu, in.weight.cpu.to(DType::f32), Tensor::from_ints({1, 2}, {2}, kGpu)),
                    doctest::Contains("lm_head_cross_entropy: device mismatch"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(in.h.gpu.to(DType::f64), in.weight.gpu.to(DType::f64),
                                          Tensor::from_ints({1, 2}, {2}, kGpu)),
                    doctest::Contains("lm_head_cross_entropy: dtype f64 is not supported on cuda"));
}
