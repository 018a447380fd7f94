// The global gradient norm and clipping on CUDA against the CPU, on the same gradients: 40
// tensors up to GPT-2's 50257 x 768 embedding, in f32, bf16 and f16, and 400 small ones (more
// than one multi-tensor launch holds); the same norm bits on every call; clipping scales like
// the CPU and leaves gradients alone below the threshold or when the norm is not finite;
// gradients on the CPU and the GPU together; gradients that are unaligned views.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "framework/cuda/caching_allocator.h"
#include "framework/ops.h"
#include "framework/optim/grad_norm.h"
#include "framework/random.h"
#include "tests/gpu/op_test_support.h"

using namespace ft;
using ft::testing::compare;
using ft::testing::Comparison;
using ft::testing::kGpu;
using ft::testing::tolerance;

namespace {

// Parameters whose gradients are the given tensors' values, converted to `dtype` on `device`.
std::vector<Tensor> params_with_grads(const std::vector<Tensor>& grads, DType dtype, Device device) {
  std::vector<Tensor> params;
  for (const Tensor& g : grads) {
    Tensor p = Tensor::zeros(g.shape(), dtype, device);
    p.set_requires_grad(true);
    p.set_grad(g.to(dtype).to(device));
    params.push_back(p);
  }
  return params;
}

// Random gradients (f32, CPU) of 40 shapes; the first is GPT-2's token embedding.
std::vector<Tensor> random_grads(uint64_t seed, bool with_embedding) {
  const Shape shapes[] = {{768}, {3, 1023}, {1}, {768, 2304}, {7}, {1024, 768}, {4097}};
  Generator gen(seed);
  std::vector<Tensor> grads;
  if (with_embedding) grads.push_back(randn({50257, 768}, gen));
  for (size_t i = grads.size(); i < 40; ++i) grads.push_back(randn(shapes[i % std::size(shapes)], gen));
  return grads;
}

void check_relative(double got, double expected, double bound) {
  CAPTURE(got);
  CAPTURE(expected);
  CHECK(std::abs(got - expected) <= bound * std::abs(expected));
}

}  // namespace

TEST_CASE("global_grad_norm and clip_grad_norm on CUDA match the CPU in f32, bf16 and f16") {
  cuda::set_poison_allocations(true);
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dtype));
    // The reference sees the same values: the gradients rounded to dtype, then widened to f32.
    std::vector<Tensor> grads = random_grads(1, dtype == DType::f32);
    for (Tensor& g : grads) g = g.to(dtype).to(DType::f32);
    std::vector<Tensor> cpu = params_with_grads(grads, DType::f32, Device::cpu());
    std::vector<Tensor> gpu = params_with_grads(grads, dtype, kGpu);

    const double expected = global_grad_norm(cpu), norm = global_grad_norm(gpu);
    check_relative(norm, expected, 1e-6);
    CHECK(global_grad_norm(gpu) == norm);  // deterministic: the same bits again

    // Below the threshold nothing moves; above it, every gradient scales like the CPU's.
    const std::vector<double> before = gpu[1].grad().to_double_vector();
    CHECK(clip_grad_norm(gpu, 2 * norm) == norm);
    CHECK(gpu[1].grad().to_double_vector() == before);
    check_relative(clip_grad_norm(cpu, expected / 3), expected,
                   1e-12);  // the CPU sums in threads: same value, not always the same bits
    CHECK(clip_grad_norm(gpu, norm / 3) == norm);
    for (size_t i = 0; i < gpu.size(); ++i) {
      CAPTURE(i);
      testing::check_close(gpu[i].grad(), cpu[i].grad(), std::max(1e-6, tolerance(dtype)),
                           std::max(1e-6, tolerance(dtype)));
    }
    check_relative(global_grad_norm(gpu), expected / 3, std::max(1e-6, tolerance(dtype)));
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("global_grad_norm and clip_grad_norm on CUDA over more gradients than one launch holds") {
  // 400 small gradients take several multi-tensor launches, each writing its partials after the
  // previous one's.
  cuda::set_poison_allocations(true);
  const Shape shapes[] = {{768}, {3}, {4097}, {1}, {64, 65}};
  Generator gen(5);
  std::vector<Tensor> grads;
  for (int i = 0; i < 400; ++i) grads.push_back(randn(shapes[i % std::size(shapes)], gen));
  std::vector<Tensor> cpu = params_with_grads(grads, DType::f32, Device::cpu());
  std::vector<Tensor> gpu = params_with_grads(grads, DType::f32, kGpu);
  const double expected = global_grad_norm(cpu), norm = global_grad_norm(gpu);
  check_relative(norm, expected, 1e-6);
  CHECK(global_grad_norm(gpu) == norm);
  CHECK(clip_grad_norm(gpu, norm / 2) == norm);
  clip_grad_norm(cpu, expected / 2);
  for (size_t i = 0; i < gpu.size(); i += 37) {
    CAPTURE(i);
    const Comparison c = compare(gpu[i].grad(), cpu[i].grad());
    INFO(c.str());
    CHECK(c.nonfinite == 0);
    CHECK(c.relative <= std::max(1e-6, tolerance(DType::f32)));
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("global_grad_norm on CUDA reads gradients that start off a 16-byte boundary") {
  // Slices from element 1: contiguous, unaligned, so the kernel reads them one value at a time;
  // the sizes give whole chunks, a shorter last chunk and a tensor smaller than a pack.
  Generator gen(4);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    std::vector<Tensor> cpu_params, gpu_params;
    for (int64_t n : {int64_t{3 * 8192}, int64_t{20001}, int64_t{3}}) {
      Tensor values = randn({n + 1}, gen).to(dtype).to(DType::f32);
      cpu_params.push_back(params_with_grads({slice(values, 0, 1, n + 1)}, DType::f32, Device::cpu())[0]);
      Tensor p = Tensor::zeros({n}, dtype, kGpu);
      p.set_requires_grad(true);
      p.set_grad(slice(values.to(dtype).to(kGpu), 0, 1, n + 1));
      gpu_params.push_back(p);
    }
    const double norm = global_grad_norm(gpu_params);
    check_relative(norm, global_grad_norm(cpu_params), 1e-6);
    CHECK(global_grad_norm(gpu_params) == norm);
  }
}

TEST_CASE("clip_grad_norm on CUDA leaves gradients alone when the norm is not finite") {
  for (double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    CAPTURE(bad);
    std::vector<Tensor> grads = random_grads(2, false);
    std::vector<double> values = grads[3].to_double_vector();
    values[12345] = bad;
    grads[3] = Tensor::from_vector(values, grads[3].shape());
    std::vector<Tensor> gpu = params_with_grads(grads, DType::f32, kGpu);
    const std::vector<double> before = gpu[0].grad().to_double_vector();
    const double norm = clip_grad_norm(gpu, 1.0);
    CHECK(std::isinf(bad) ? std::isinf(norm) : std::isnan(norm));
    CHECK(gpu[0].grad().to_double_vector() == before);
  }
}

TEST_CASE("global_grad_norm adds gradients on the CPU and on the GPU") {
  std::vector<Tensor> grads = random_grads(3, false);
  std::vector<Tensor> all = params_with_grads(grads, DType::f32, Device::cpu());
  const double expected = global_grad_norm(all);
  std::vector<Tensor> mixed = all;
  for (size_t i = 0; i < mixed.size(); i += 2) mixed[i] = params_with_grads({grads[i]}, DType::f32, kGpu)[0];
  Tensor no_grad = Tensor::zeros({5}, DType::f32, kGpu);  // a parameter without a gradient counts for nothing
  no_grad.set_requires_grad(true);
  mixed.push_back(no_grad);
  check_relative(global_grad_norm(mixed), expected, 1e-6);
}
