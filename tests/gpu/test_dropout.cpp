// dropout on CUDA draws the CPU's mask: for the same generator state, the same elements drop
// and the kept ones carry the same bits, forward and backward, in f32, bf16 and f16, also for a
// view that is not 16-byte aligned; the generator advances alike; and a dtype without a kernel
// is an error that draws nothing.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/cuda/caching_allocator.h"
#include "tests/gpu/op_test_support.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::testing;

TEST_CASE("dropout on CUDA drops the elements the CPU drops, with the same bits") {
  cuda::set_poison_allocations(true);
  Generator data(401);
  const Shape shapes[] = {{8, 1024, 768}, {1}, {3}, {1023}};
  for (DType dtype : kGpuDTypes) {
    for (const Shape& shape : shapes) {
      for (double p : {0.1, 0.5}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape_str(shape));
        CAPTURE(p);
        Generator on_gpu(77), on_cpu(77);
        on_gpu.take(123457);  // a counter that does not start at 0
        on_cpu.take(123457);
        Twin x = random_leaves(shape, dtype, data);
        // The CPU computes in f32 from the same values; kept elements are x * (float)(1/(1-p)) in
        // fp32 on both devices, then rounded to the dtype.
        Tensor x32 = x.cpu.detach().to(DType::f32).set_requires_grad(true);
        Tensor y = dropout(x.gpu, p, on_gpu), expected = dropout(x32, p, on_cpu);
        CHECK(on_gpu.state() == on_cpu.state());
        CHECK(all_finite(y));
        const std::vector<double> got = y.to_double_vector();
        CHECK(got == expected.to(dtype).to_double_vector());

        Twin w = random_values(shape, dtype, data);
        weighted_sum(y, w.gpu).backward();
        weighted_sum(expected, w.cpu.to(DType::f32)).backward();
        CHECK(x.gpu.grad().to_double_vector() == x32.grad().to(dtype).to_double_vector());

        if (shape_numel(shape) < 1000000) continue;
        int64_t dropped = 0;
        for (double v : got) dropped += v == 0.0;
        CHECK(static_cast<double>(dropped) / static_cast<double>(got.size()) == doctest::Approx(p).epsilon(0.01));
      }
    }
  }
}

TEST_CASE("dropout on CUDA of a view that starts off a 16-byte boundary draws the CPU's mask") {
  // A slice from element 1 is contiguous but unaligned, which takes the kernel's
  // one-element-per-load path; 4099 elements leave a group of four incomplete.
  cuda::set_poison_allocations(true);
  Generator data(404);
  for (DType dtype : kGpuDTypes) {
    for (int64_t n : {int64_t{4099}, int64_t{8 * 1024 * 768}}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(n);
      Twin x = random_values({n + 1}, dtype, data);
      Tensor view = slice(x.gpu, 0, 1, n + 1);
      Generator on_gpu(78), on_cpu(78);
      on_gpu.take(99);
      on_cpu.take(99);
      Tensor y = dropout(view, 0.1, on_gpu);
      Tensor expected = dropout(slice(x.cpu, 0, 1, n + 1).to(DType::f32), 0.1, on_cpu);
      CHECK(on_gpu.state() == on_cpu.state());
      CHECK(all_finite(y));
      CHECK(y.to_double_vector() == expected.to(dtype).to_double_vector());
    }
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("dropout on CUDA with p = 0 returns its input and draws nothing") {
  Generator gen(402);
  Tensor x = randn({1023}, gen, DType::bf16, kGpu);
  const GeneratorState before = gen.state();
  CHECK(dropout(x, 0.0, gen).impl() == x.impl());
  CHECK(gen.state() == before);
}

TEST_CASE("dropout on CUDA rounds p like the CPU: a tiny p keeps everything, one near 1 drops everything") {
  // t = 0 runs the kernel with scale 1; t = 65536 is a memset, which must zero even a NaN.
  cuda::set_poison_allocations(true);
  Generator data(405);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Twin x = random_values({1023}, dtype, data);
    Generator on_gpu(79), on_cpu(79);
    CHECK(dropout(x.gpu, 1e-6, on_gpu).to_double_vector() == x.cpu.to_double_vector());
    std::vector<double> with_nan = x.cpu.to_double_vector();
    with_nan[5] = std::nan("");
    Tensor nan_input = Tensor::from_vector(with_nan, {1023}, dtype, kGpu);
    CHECK(dropout(nan_input, 1 - 1e-6, on_gpu).to_double_vector() == std::vector<double>(1023, 0.0));
    dropout(x.cpu, 1e-6, on_cpu);
    dropout(x.cpu, 1 - 1e-6, on_cpu);
    CHECK(on_gpu.state() == on_cpu.state());
  }
  cuda::set_poison_allocations(false);
}

TEST_CASE("dropout on CUDA rejects dtypes without a kernel, drawing nothing") {
  Generator gen(403);
  Tensor f64 = randn({4}, gen, DType::f64, kGpu);
  const GeneratorState before = gen.state();
  CHECK(testing::error_message([&] { dropout(f64, 0.5, gen); }) ==
        "dropout: dtype f64 is not supported on cuda (expected f32, bf16 or f16)");
  CHECK(gen.state() == before);  // a failed call draws nothing
}
