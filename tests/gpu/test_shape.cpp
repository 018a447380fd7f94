// Shape ops on CUDA: concat along every dimension (a pitched copy per input), slice's gradient
// (the upstream gradient placed between zeros, through concat), contiguous and reshape of
// transposed views, all equal to the CPU's element for element and forward and backward; and
// concat of tensors on different devices is an error.
#include <doctest/doctest.h>

#include "framework/cuda/caching_allocator.h"
#include "tests/gpu/op_test_support.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::testing;

TEST_CASE("concat on CUDA equals the CPU's along every dimension, forward and backward") {
  cuda::set_poison_allocations(true);
  Generator gen(501);
  for (DType dtype : kGpuDTypes) {
    for (int64_t dim : {0, 1, 2, -1}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(dim);
      // Three inputs of sizes 3, 1 and 1023 along `dim`, [4, 5, 6] otherwise.
      std::vector<Twin> parts;
      std::vector<Tensor> on_gpu, on_cpu;
      for (int64_t size : {3, 1, 1023}) {
        Shape shape = {4, 5, 6};
        shape[dim < 0 ? dim + 3 : dim] = size;
        parts.push_back(random_leaves(shape, dtype, gen));
        on_gpu.push_back(parts.back().gpu);
        on_cpu.push_back(parts.back().cpu);
      }
      Tensor y = concat(on_gpu, dim), expected = concat(on_cpu, dim);
      CHECK(gpu_error(y, expected) == 0);

      Twin w = random_values(expected.shape(), dtype, gen);
      weighted_sum(y, w.gpu).backward();
      weighted_sum(expected, w.cpu).backward();
      for (const Twin& part : parts) CHECK(gpu_error(part.gpu.grad(), part.cpu.grad()) == 0);
    }
  }
}

TEST_CASE("concat on CUDA moves integer and 8-byte elements too") {
  cuda::set_poison_allocations(true);
  Tensor a = Tensor::from_ints({1, 2, 3, 4}, {2, 2}), b = Tensor::from_ints({5, 6}, {2, 1});
  CHECK(concat({a.to(kGpu), b.to(kGpu)}, 1).to_int_vector() == std::vector<int32_t>{1, 2, 5, 3, 4, 6});
  Tensor c = Tensor::from_vector({0.1, 0.2}, {1, 2}, DType::f64);
  CHECK(concat({c.to(kGpu), c.to(kGpu)}, 0).to_double_vector() == std::vector<double>{0.1, 0.2, 0.1, 0.2});
}

TEST_CASE("slice's gradient on CUDA is the upstream gradient between zeros") {
  cuda::set_poison_allocations(true);
  Generator gen(502);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    // GPT-2's fused q, k, v projection [B, T, 3C], cut into its three parts.
    Twin qkv = random_leaves({2, 1024, 3 * 768}, dtype, gen);
    Tensor loss_gpu, loss_cpu;
    for (int64_t part = 0; part < 3; ++part) {
      Tensor piece_gpu = slice(qkv.gpu, 2, part * 768, (part + 1) * 768);
      Tensor piece_cpu = slice(qkv.cpu, 2, part * 768, (part + 1) * 768);
      CHECK(gpu_error(piece_gpu.contiguous(), piece_cpu) == 0);
      Twin w = random_values(piece_cpu.shape(), dtype, gen);
      Tensor term_gpu = weighted_sum(piece_gpu, w.gpu), term_cpu = weighted_sum(piece_cpu, w.cpu);
      loss_gpu = part == 0 ? term_gpu : add(loss_gpu, term_gpu);
      loss_cpu = part == 0 ? term_cpu : add(loss_cpu, term_cpu);
    }
    loss_gpu.backward();
    loss_cpu.backward();
    // Each element of qkv.grad is one upstream element plus zeros from the other slices' padding.
    CHECK(gpu_error(qkv.gpu.grad(), qkv.cpu.grad()) == 0);

    // A slice in the middle of a dimension other than the last.
    Twin x = random_leaves({5, 1023, 3}, dtype, gen);
    Twin w = random_values({5, 1000, 3}, dtype, gen);
    weighted_sum(slice(x.gpu, 1, 11, 1011), w.gpu).backward();
    weighted_sum(slice(x.cpu, 1, 11, 1011), w.cpu).backward();
    CHECK(gpu_error(x.gpu.grad(), x.cpu.grad()) == 0);
  }
}

TEST_CASE("contiguous and reshape of transposed views on CUDA equal the CPU's, forward and backward") {
  cuda::set_poison_allocations(true);
  Generator gen(503);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Twin x = random_leaves({8, 12, 1024, 64}, dtype, gen);  // [B, H, T, D]
    Tensor merged_gpu = reshape(transpose(x.gpu, 1, 2), {8, 1024, 768});
    Tensor merged_cpu = reshape(transpose(x.cpu, 1, 2), {8, 1024, 768});
    CHECK(gpu_error(merged_gpu, merged_cpu) == 0);
    CHECK(gpu_error(contiguous(transpose(x.gpu, 2, 3)), contiguous(transpose(x.cpu, 2, 3))) == 0);

    Twin w = random_values({8, 1024, 768}, dtype, gen);
    weighted_sum(merged_gpu, w.gpu).backward();
    weighted_sum(merged_cpu, w.cpu).backward();
    CHECK(gpu_error(x.gpu.grad(), x.cpu.grad()) == 0);
  }
}

TEST_CASE("concat rejects tensors on different devices") {
  Tensor cpu = Tensor::zeros({2, 3}), gpu = Tensor::zeros({2, 3}, DType::f32, kGpu);
  const std::string message = testing::error_message([&] { concat({gpu, cpu}, 0); });
  CHECK(message.find("concat: device mismatch") != std::string::npos);
  CHECK(message.find("cuda:0") != std::string::npos);
}
