// AdamW on CUDA against the CPU AdamW: the same 40 f32 parameters (more than one multi-tensor
// launch holds; sizes from 1 to GPT-2's 50257 x 64 slices) with the same gradients, two
// weight-decay groups, six steps with a learning-rate change and a parameter without a
// gradient at one step. Parameters and both moments agree within 1e-6 (the kernel is meant
// to agree bit for bit; that is reported, not required). Also: GPU parameters must be f32.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <iterator>

#include "framework/cuda/caching_allocator.h"
#include "framework/ops.h"
#include "framework/optim/adamw.h"
#include "framework/optim/grad_norm.h"
#include "framework/random.h"
#include "tests/gpu/op_test_support.h"

using namespace ft;
using ft::testing::kGpu;

namespace {

void check_close(const char* what, size_t index, const Tensor& got, const Tensor& expected) {
  CAPTURE(what);
  CAPTURE(index);
  testing::check_close(got, expected, 1e-6, 1e-6);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor ha = a.to(Device::cpu()).contiguous(), hb = b.to(Device::cpu()).contiguous();
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

}  // namespace

TEST_CASE("adamw on CUDA steps like the CPU AdamW over several steps and two groups") {
  cuda::set_poison_allocations(true);
  const Shape shapes[] = {{768}, {3, 1023}, {1}, {1024, 768}, {7}, {50257, 64}, {2049}, {4, 4, 3}};
  constexpr size_t kParams = 40;
  Generator gen(11);
  std::vector<Tensor> cpu_params, gpu_params;
  ParamGroup cpu_decay{{}, 0.1}, cpu_plain{{}, 0.0}, gpu_decay{{}, 0.1}, gpu_plain{{}, 0.0};
  for (size_t i = 0; i < kParams; ++i) {
    Tensor init = randn(shapes[i % std::size(shapes)], gen);
    Tensor cpu = init.clone(), gpu = init.to(kGpu);
    cpu.set_requires_grad(true);
    gpu.set_requires_grad(true);
    cpu_params.push_back(cpu);
    gpu_params.push_back(gpu);
    (i % 3 == 0 ? cpu_plain : cpu_decay).params.push_back(cpu);
    (i % 3 == 0 ? gpu_plain : gpu_decay).params.push_back(gpu);
  }
  AdamWOptions options;
  options.lr = 1e-3;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.eps = 1e-8;
  AdamW cpu_opt({cpu_decay, cpu_plain}, options), gpu_opt({gpu_decay, gpu_plain}, options);

  for (int step = 0; step < 6; ++step) {
    if (step == 3) {
      cpu_opt.set_lr(3e-4);
      gpu_opt.set_lr(3e-4);
    }
    for (size_t i = 0; i < kParams; ++i) {
      if (i == 5 && step == 2) continue;  // no gradient: skipped, its own step count lags
      Tensor g = randn(cpu_params[i].shape(), gen);
      cpu_params[i].set_grad(g);
      gpu_params[i].set_grad(g.to(kGpu));
    }
    cpu_opt.step();
    gpu_opt.step();
    cpu_opt.zero_grad();
    gpu_opt.zero_grad();
  }

  REQUIRE(gpu_opt.state_count() == kParams);
  size_t bit_identical = 0;
  for (size_t i = 0; i < kParams; ++i) {
    // The optimizers hold the parameters in group order; compare state by parameter identity.
    const auto& cpu_list = cpu_opt.params();
    const auto& gpu_list = gpu_opt.params();
    const size_t k =
        static_cast<size_t>(std::find_if(cpu_list.begin(), cpu_list.end(),
                                         [&](const Tensor& p) { return p.impl() == cpu_params[i].impl(); }) -
                            cpu_list.begin());
    REQUIRE(gpu_list[k].impl() == gpu_params[i].impl());
    const AdamWState &cs = cpu_opt.states()[k], &gs = gpu_opt.states()[k];
    CHECK(gs.step == cs.step);
    CHECK(gs.step == (i == 5 ? 5 : 6));
    check_close("param", i, gpu_params[i], cpu_params[i]);
    check_close("exp_avg", i, gs.exp_avg, cs.exp_avg);
    check_close("exp_avg_sq", i, gs.exp_avg_sq, cs.exp_avg_sq);
    bit_identical += same_bits(gpu_params[i], cpu_params[i]) && same_bits(gs.exp_avg, cs.exp_avg) &&
                     same_bits(gs.exp_avg_sq, cs.exp_avg_sq);
  }
  MESSAGE(bit_identical, " of ", kParams, " parameters (with both moments) are bit-identical to the CPU's");
  WARN(bit_identical == kParams);
  cuda::set_poison_allocations(false);
}

TEST_CASE("adamw on CUDA steps f32 masters from 16-bit gradients, unscaled and clipped on the device, like the CPU") {
  cuda::set_poison_allocations(true);
  const Shape shapes[] = {{768}, {3, 1023}, {1}, {1024, 768}, {7}, {2049}};
  for (DType dtype : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dtype));
    Generator gen(12);
    std::vector<Tensor> cpu_masters, gpu_masters, cpu_compute, gpu_compute;
    for (const Shape& shape : shapes) {
      const Tensor init = randn(shape, gen);
      cpu_masters.push_back(init.clone().set_requires_grad(true));
      gpu_masters.push_back(init.to(kGpu).set_requires_grad(true));
      cpu_compute.push_back(init.to(dtype).set_requires_grad(true));
      gpu_compute.push_back(init.to(dtype).to(kGpu).set_requires_grad(true));
    }
    AdamW cpu_opt({{cpu_masters, 0.1, cpu_compute}}), gpu_opt({{gpu_masters, 0.1, gpu_compute}});
    // Gradients scaled by 1024 as an fp16 loss scale leaves them; the norm (about 1e3 * sqrt of
    // the count) is far over max_norm, so every step clips.
    const GradientScaling scaling{1.0 / 1024, 1.0};
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < std::size(shapes); ++i) {
        const Tensor g = scale(randn(shapes[i], gen), 1024.0).to(dtype);
        cpu_compute[i].set_grad(g);
        gpu_compute[i].set_grad(g.to(kGpu));
      }
      const Tensor cpu_sum = grad_sum_of_squares(cpu_opt.gradient_holders());
      const Tensor gpu_sum = grad_sum_of_squares(gpu_opt.gradient_holders());
      CHECK(gpu_sum.device() == kGpu);
      testing::check_close(gpu_sum, cpu_sum, 1e-6, 1e-6);
      cpu_opt.step(cpu_sum, scaling);
      gpu_opt.step(gpu_sum, scaling);
    }
    for (size_t i = 0; i < std::size(shapes); ++i) {
      CAPTURE(i);
      check_close("master", i, gpu_masters[i], cpu_masters[i]);
      check_close("exp_avg", i, gpu_opt.states()[i].exp_avg, cpu_opt.states()[i].exp_avg);
      check_close("exp_avg_sq", i, gpu_opt.states()[i].exp_avg_sq, cpu_opt.states()[i].exp_avg_sq);
      // The 16-bit copy is its master rounded, bit for bit.
      CHECK(same_bits(gpu_compute[i], gpu_masters[i].to(dtype)));
    }

    // An inf gradient: the device sees a non-finite norm and writes nothing.
    std::vector<std::vector<double>> before;
    for (const Tensor& t : gpu_masters) before.push_back(t.to_double_vector());
    const std::vector<double> compute_before = gpu_compute[0].to_double_vector();
    gpu_compute[0].grad().fill_(INFINITY);
    gpu_opt.step(grad_sum_of_squares(gpu_opt.gradient_holders()), scaling);
    for (size_t i = 0; i < std::size(shapes); ++i) CHECK(gpu_masters[i].to_double_vector() == before[i]);
    CHECK(gpu_compute[0].to_double_vector() == compute_before);
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("adamw refuses a GPU parameter that is not f32") {
  Tensor p = Tensor::zeros({3}, DType::f64, kGpu);
  p.set_requires_grad(true);
  CHECK_THROWS_WITH(AdamW({{{p}, 0.0}}), doctest::Contains("is on a GPU but not f32"));
}
