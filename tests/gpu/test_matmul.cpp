// matmul and linear on CUDA (cuBLAS, and cuBLASLt's bias epilogues) against the CPU in f64 from
// the same inputs, forward and backward: GPT-2's shapes, odd sizes, every transpose, batched
// and shared-B products, in f32 (TF32 off, then on with its looser bound), bf16 and f16.
#include <doctest/doctest.h>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

// The stored shape of an operand whose op() is [rows, cols].
Shape matrix(Shape batch, int64_t rows, int64_t cols, bool transposed) {
  batch.push_back(transposed ? cols : rows);
  batch.push_back(transposed ? rows : cols);
  return batch;
}

OpErrors compare_matmul(const Shape& batch, bool shared_b, int64_t m, int64_t k, int64_t n, bool ta, bool tb,
                        DType dtype, uint64_t seed) {
  const Twin a = random_twin(matrix(batch, m, k, ta), dtype, seed);
  const Twin b = random_twin(matrix(shared_b ? Shape{} : batch, k, n, tb), dtype, seed + 1);
  return compare_with_cpu([ta, tb](const std::vector<Tensor>& x) { return matmul(x[0], x[1], ta, tb); }, {a, b}, dtype,
                          seed + 2);
}

OpErrors compare_linear(const Shape& x_shape, int64_t out_features, bool with_bias, DType dtype, uint64_t seed,
                        const std::vector<bool>& frozen = {}) {
  const Twin x = random_twin(x_shape, dtype, seed);
  const Twin w = random_twin({out_features, x_shape.back()}, dtype, seed + 1, 0.05);
  const Twin bias = with_bias ? random_twin({out_features}, dtype, seed + 2) : Twin{};
  return compare_with_cpu([](const std::vector<Tensor>& v) { return linear(v[0], v[1], v[2]); }, {x, w, bias}, dtype,
                          seed + 3, frozen);
}

}  // namespace

TEST_CASE("matmul at GPT-2's sizes: [8, 1024, 768] x W^T, W [3072, 768], and its backward") {
  cuda::set_poison_allocations(true);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    AllowTf32 exact(false);
    check_errors(compare_matmul({8}, true, 1024, 768, 3072, false, true, dtype, 10), tolerance(dtype));
  }
  AllowTf32 tf32(true);
  check_errors(compare_matmul({8}, true, 1024, 768, 3072, false, true, DType::f32, 10), kTf32Bound);
}

TEST_CASE("matmul: every transpose, batched and shared B, odd sizes") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  struct Sizes {
    int64_t m, k, n;
  };
  const Sizes sizes[] = {{1, 1, 1}, {3, 5, 7}, {1, 64, 3}, {33, 1, 65}, {1023, 17, 129}};
  uint64_t seed = 100;
  for (DType dtype : kGpuDTypes)
    for (const Sizes& s : sizes)
      for (Shape batch : {Shape{}, Shape{3}, Shape{2, 3}})
        for (bool shared_b : {false, true})
          for (bool ta : {false, true})
            for (bool tb : {false, true}) {
              if (batch.empty() && shared_b) continue;
              CAPTURE(dtype_text(dtype));
              CAPTURE(s.m);
              CAPTURE(s.k);
              CAPTURE(s.n);
              CAPTURE(batch.size());
              CAPTURE(shared_b);
              CAPTURE(ta);
              CAPTURE(tb);
              check_errors(compare_matmul(batch, shared_b, s.m, s.k, s.n, ta, tb, dtype, seed += 3), tolerance(dtype));
            }
}

TEST_CASE("matmul with TF32 stays within its looser bound, and the switch reads back") {
  cuda::set_poison_allocations(true);
  AllowTf32 tf32(true);
  CHECK(cuda::allow_tf32());
  check_errors(compare_matmul({2, 3}, false, 129, 1000, 67, true, false, DType::f32, 200), kTf32Bound);
  cuda::set_allow_tf32(false);
  CHECK_FALSE(cuda::allow_tf32());
}

TEST_CASE("matmul with zero-sized dimensions gives zeros or empty tensors") {
  cuda::set_poison_allocations(true);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    // k = 0: an empty sum, so zeros (and the poisoned output must have been overwritten).
    const OpErrors e = compare_matmul({2}, false, 3, 0, 4, false, false, dtype, 300);
    CHECK(e.out == 0);
    Tensor empty_k = matmul(Tensor::empty({2, 3, 0}, dtype, kGpu), Tensor::empty({2, 0, 4}, dtype, kGpu));
    CHECK(empty_k.to_double_vector() == std::vector<double>(24, 0.0));
    CHECK(matmul(Tensor::empty({0, 3, 5}, dtype, kGpu), Tensor::empty({5, 4}, dtype, kGpu)).shape() == Shape{0, 3, 4});
    CHECK(matmul(Tensor::empty({3, 5}, dtype, kGpu), Tensor::empty({5, 0}, dtype, kGpu)).shape() == Shape{3, 0});
  }
}

TEST_CASE("linear at GPT-2's sizes, with the bias in the epilogue and its gradient beside the weight's") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    check_errors(compare_linear({8, 1024, 768}, 3072, true, dtype, 400), tolerance(dtype));  // MLP up
    check_errors(compare_linear({8, 1024, 3072}, 768, true, dtype, 410), tolerance(dtype));  // MLP down
  }
}

TEST_CASE("linear: odd sizes, no bias, frozen weight (the bias gradient alone) or frozen bias") {
  cuda::set_poison_allocations(true);
  AllowTf32 exact(false);
  uint64_t seed = 500;
  for (DType dtype : kGpuDTypes)
    for (Shape x_shape : {Shape{1, 1}, Shape{3, 1}, Shape{1, 7}, Shape{5, 3, 33}, Shape{1023, 65}})
      for (int64_t out_features : {1, 3, 129}) {
        CAPTURE(dtype_text(dtype));
        CAPTURE(shape_str(x_shape));
        CAPTURE(out_features);
        const double bound = tolerance(dtype);
        check_errors(compare_linear(x_shape, out_features, true, dtype, seed += 4), bound);
        check_errors(compare_linear(x_shape, out_features, false, dtype, seed += 4), bound);
        check_errors(compare_linear(x_shape, out_features, true, dtype, seed += 4, {false, true}), bound);
        check_errors(compare_linear(x_shape, out_features, true, dtype, seed += 4, {false, false, true}), bound);
      }
}

TEST_CASE("linear with TF32") {
  cuda::set_poison_allocations(true);
  AllowTf32 tf32(true);
  check_errors(compare_linear({4, 256, 768}, 2304, true, DType::f32, 600), kTf32Bound);  // the QKV projection
}

TEST_CASE("matmul and linear on CUDA reject mixed devices and f64") {
  Tensor a = Tensor::zeros({2, 3}, DType::f32, kGpu), b = Tensor::zeros({3, 4}, DType::f32);
  CHECK_THROWS_WITH(matmul(a, b),
                    doctest::Contains("matmul: device mismatch: f32[2, 3] on cuda:0 and f32[3, 4] on cpu"));
  CHECK_THROWS_WITH(matmul(a.to(DType::f64), b.to(DType::f64).to(kGpu)),
                    doctest::Contains("matmul: dtype f64 is not supported on cuda"));
  Tensor w = Tensor::zeros({4, 3}, DType::f32, kGpu);
  CHECK_THROWS_WITH(linear(a, w, Tensor::zeros({4})),
                    doctest::Contains("linear: device mismatch: f32[2, 3] on cuda:0 and f32[4] on cpu"));
  CHECK_THROWS_WITH(linear(a.to(DType::f64), w.to(DType::f64), Tensor()),
                    doctest::Contains("linear: dtype f64 is not supported on cuda"));
}
