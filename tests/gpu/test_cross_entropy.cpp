// cross_entropy on CUDA against the CPU reference, from the same random logits and targets with
// ignored rows: the loss and dlogits for a random upstream gradient, in f32, bf16 and f16, up
// to GPT-2's 8 x 1024 rows of 50257. dlogits is compared whole and with the target entries
// masked out (the softmax part, which the -1/count at the targets would dominate in a norm).
// Also: every row ignored, targets out of range (NaN on CUDA), huge logits, backward() into a
// leaf, the same loss bits twice, and the errors. Allocations are poisoned.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "framework/autograd.h"
#include "framework/cuda/caching_allocator.h"
#include "framework/ops.h"
#include "tests/gpu/op_test_support.h"

using namespace ft;
using ft::testing::host_f64;
using ft::testing::kGpu;
using ft::testing::tolerance;

namespace {

constexpr int kIgnore = -100;
// References above this many elements run in f32 on the CPU (8192 x 50257 in f64 is 3.3 GB a
// tensor); the CPU kernel sums the exponentials in double either way.
constexpr int64_t kF64ReferenceLimit = 50'000'000;

// Random targets in [0, vocab), every 7th row (from row 3) ignored.
std::vector<int32_t> random_targets(int64_t rows, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 7 == 3 ? kIgnore : static_cast<int32_t>(pick(rng));
  return targets;
}

Tensor random_logits(int64_t rows, int64_t vocab, DType dtype, uint64_t seed, double mean = 0.0) {
  Generator gen(seed);
  Tensor logits = Tensor::empty({rows, vocab}, dtype, kGpu);
  normal_(logits, gen, mean, 2.0);
  return logits;
}

struct Result {
  Tensor loss, dlogits;
};

// The loss, and dlogits from the backward for an upstream gradient `upstream`.
Result run(const Tensor& logits, const std::vector<int32_t>& targets, double upstream, DType dtype, Device device) {
  Tensor x = logits.to(dtype).to(device).detach();
  x.set_requires_grad(true);
  Tensor loss = cross_entropy(x, Tensor::from_ints(targets, {x.size(0)}, device), kIgnore);
  const Node& node = *loss.grad_fn();
  NoGradGuard no_grad;
  return {loss, node.backward(Tensor::full({}, upstream, loss.dtype(), device), node.needs)[0]};
}

void check_close(const char* what, const Tensor& got, const Tensor& expected, DType dtype) {
  CAPTURE(what);
  testing::check_close(got, expected, tolerance(dtype), tolerance(dtype));
}

void check_against_cpu(const Tensor& logits, const std::vector<int32_t>& targets, double upstream) {
  const DType dtype = logits.dtype();
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const DType reference = logits.numel() > kF64ReferenceLimit ? DType::f32 : DType::f64;
  const Result gpu = run(logits, targets, upstream, dtype, kGpu);
  const Result cpu = run(logits, targets, upstream, reference, Device::cpu());

  // The loss is f32 and computed in fp32 from the same logits, whatever their dtype.
  CHECK(gpu.loss.dtype() == DType::f32);
  CHECK(gpu.loss.device() == kGpu);
  CHECK(std::abs(gpu.loss.item() - cpu.loss.item()) <= 1e-5 * std::max(1.0, std::abs(cpu.loss.item())));
  REQUIRE(gpu.dlogits.dtype() == dtype);
  check_close("dlogits", gpu.dlogits, cpu.dlogits, dtype);

  Tensor got = host_f64(gpu.dlogits), expected = host_f64(cpu.dlogits).clone();
  double* g = got.data<double>();
  double* e = expected.data<double>();
  int64_t nonzero_in_ignored_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == kIgnore) {
      for (int64_t v = 0; v < vocab; ++v) nonzero_in_ignored_rows += g[r * vocab + v] != 0.0;
      continue;
    }
    g[r * vocab + targets[r]] = e[r * vocab + targets[r]] = 0.0;
  }
  CHECK(nonzero_in_ignored_rows == 0);
  check_close("dlogits without the target entries", got, expected, dtype);
}

}  // namespace

TEST_CASE("cross_entropy on CUDA matches the CPU loss and dlogits in f32, bf16 and f16") {
  cuda::set_poison_allocations(true);
  struct Case {
    int64_t rows, vocab;
    DType dtype;
    double upstream;
  };
  // GPT-2's 8 x 1024 rows of 50257 in f32 and bf16; f16 with an upstream gradient of 1024, as a
  // loss scaler would give it (unscaled, softmax / 7000 rows underflows f16); odd sizes for tails.
  const Case cases[] = {
      {8 * 1024, 50257, DType::f32, 0.75},
      {8 * 1024, 50257, DType::bf16, 0.75},
      {64, 50257, DType::f16, 1024.0},
      {1, 1, DType::f32, 1.5},
      {3, 7, DType::f32, -2.0},
      {5, 1023, DType::bf16, 1.0},
      {37, 1025, DType::f16, 3.0},
      {1023, 3, DType::f32, 1.0},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    CAPTURE(c.rows);
    CAPTURE(c.vocab);
    CAPTURE(dtype_name(c.dtype));
    check_against_cpu(random_logits(c.rows, c.vocab, c.dtype, seed), random_targets(c.rows, c.vocab, seed), c.upstream);
    ++seed;
  }
  cuda::set_poison_allocations(false);
}

// Logits viewed 3 elements into their allocation: every row sits at another offset from a
// 16-byte boundary than the same row of the fresh dlogits, so the forward's rows split into a
// head, 16-byte packs and a tail at those offsets, and the backward takes its one-element path.
TEST_CASE("cross_entropy on CUDA with logits that start off a 16-byte boundary") {
  cuda::set_poison_allocations(true);
  const int64_t rows = 37, vocab = 1029;
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Tensor flat = random_logits(1, rows * vocab + 3, dtype, 20);
    const Tensor logits = flat.as_strided({rows, vocab}, {vocab, 1}, 3);
    REQUIRE(logits.is_contiguous());
    check_against_cpu(logits, random_targets(rows, vocab, 21), 1.0);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("cross_entropy on CUDA stays finite for logits far from 0") {
  cuda::set_poison_allocations(true);
  // exp(100) overflows f32: only the max subtraction keeps the sums finite.
  for (double mean : {100.0, -100.0})
    check_against_cpu(random_logits(5, 1023, DType::f32, 9, mean), random_targets(5, 1023, 9), 1.0);
  cuda::set_poison_allocations(false);
}

TEST_CASE("cross_entropy on CUDA with every row ignored: loss 0 and zero gradients") {
  cuda::set_poison_allocations(true);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Result r = run(random_logits(16, 100, dtype, 3), std::vector<int32_t>(16, kIgnore), 1.0, dtype, kGpu);
    CHECK(r.loss.item() == 0.0);
    for (double v : r.dlogits.to_double_vector()) REQUIRE(v == 0.0);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("cross_entropy on CUDA: a target out of range gives a NaN loss (it is not checked on the host)") {
  Tensor logits = random_logits(2, 10, DType::f32, 4);
  for (int32_t bad : {10, -1, 1000}) {
    CAPTURE(bad);
    const Result r = run(logits, {3, bad}, 1.0, DType::f32, kGpu);
    CHECK(std::isnan(r.loss.item()));
  }
}

TEST_CASE("cross_entropy on CUDA: backward() puts the CPU's gradient into a bf16 leaf") {
  const std::vector<int32_t> targets = random_targets(300, 1000, 5);
  Tensor logits = random_logits(300, 1000, DType::bf16, 5);
  std::vector<Tensor> grads;
  for (Device device : {kGpu, Device::cpu()}) {
    Tensor x = logits.to(device.is_cuda() ? DType::bf16 : DType::f64).to(device).detach();
    x.set_requires_grad(true);
    cross_entropy(x, Tensor::from_ints(targets, {300}, device)).backward();
    grads.push_back(x.grad());
  }
  REQUIRE(grads[0].defined());
  CHECK(grads[0].dtype() == DType::bf16);
  check_close("logits.grad", grads[0], grads[1], DType::bf16);
}

TEST_CASE("cross_entropy on CUDA gives the same loss bits on every run") {
  Tensor logits = random_logits(2048, 50257, DType::bf16, 6);
  const std::vector<int32_t> targets = random_targets(2048, 50257, 6);
  const double first = run(logits, targets, 1.0, DType::bf16, kGpu).loss.item();
  CHECK(run(logits, targets, 1.0, DType::bf16, kGpu).loss.item() == first);
}

TEST_CASE("cross_entropy on CUDA refuses targets on another device and f64 logits") {
  Tensor logits = random_logits(2, 5, DType::f32, 7);
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from_ints({1, 2}, {2})),
                    doctest::Contains("cross_entropy: device mismatch"));
  CHECK_THROWS_WITH(cross_entropy(logits.to(DType::f64), Tensor::from_ints({1, 2}, {2}, kGpu)),
                    doctest::Contains("cross_entropy: dtype f64 is not supported on cuda"));
}
