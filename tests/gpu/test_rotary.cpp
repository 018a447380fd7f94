// rotary_embedding on CUDA against the CPU in f64 from the same inputs, forward and backward, in
// f32, bf16 and f16: GPT-2's head shape with default positions, packed rows (positions that
// restart at each document), large positions (where an fp32 angle would be off), odd sizes.
#include <doctest/doctest.h>

#include <random>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

// Positions of packed rows: documents of random lengths, each starting again at `first`.
Twin packed_positions(int64_t batch, int64_t seq_len, int32_t first, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> length(1, static_cast<int32_t>(std::max<int64_t>(seq_len / 3, 1)));
  std::vector<int32_t> positions;
  for (int64_t b = 0; b < batch; ++b) {
    int32_t left = 0, position = 0;
    for (int64_t t = 0; t < seq_len; ++t) {
      if (left == 0) {
        left = length(rng);
        position = first;
      }
      positions.push_back(position++);
      --left;
    }
  }
  return int_twin(positions, {batch, seq_len});
}

// positions: null for the default 0..T-1.
OpErrors compare_rotary(const Shape& shape, const Twin* positions, double base, DType dtype, uint64_t seed) {
  const OpFn f = [positions, base](const std::vector<Tensor>& x) {
    Tensor pos = positions ? (x[0].device().is_cuda() ? positions->gpu : positions->cpu) : Tensor();
    return rotary_embedding(x[0], pos, base);
  };
  return compare_with_cpu(f, {random_twin(shape, dtype, seed)}, dtype, seed + 1);
}

}  // namespace

TEST_CASE("rotary_embedding at GPT-2's head shape, default and packed positions") {
  cuda::set_poison_allocations(true);
  const Shape shape{8, 12, 1024, 64};
  const Twin packed = packed_positions(8, 1024, 0, 1);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    check_errors(compare_rotary(shape, nullptr, 10000.0, dtype, 10), tolerance(dtype));
    check_errors(compare_rotary(shape, &packed, 10000.0, dtype, 20), tolerance(dtype));
  }
}

TEST_CASE("rotary_embedding at large positions and another base, and odd sizes") {
  cuda::set_poison_allocations(true);
  const Twin far = packed_positions(2, 300, 30000, 2);  // angles up to ~3e4 radians
  const Shape odd[] = {{1, 1, 1, 2}, {2, 3, 5, 6}, {3, 1, 7, 130}, {1, 2, 33, 98}};
  uint64_t seed = 100;
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    check_errors(compare_rotary({2, 4, 300, 64}, &far, 10000.0, dtype, seed += 2), tolerance(dtype));
    check_errors(compare_rotary({2, 4, 300, 64}, &far, 1e6, dtype, seed += 2), tolerance(dtype));
    for (const Shape& shape : odd) {
      CAPTURE(shape_str(shape));
      const Twin positions = packed_positions(shape[0], shape[2], 5, seed);
      check_errors(compare_rotary(shape, nullptr, 10000.0, dtype, seed += 2), tolerance(dtype));
      check_errors(compare_rotary(shape, &positions, 500.0, dtype, seed += 2), tolerance(dtype));
    }
  }
}

TEST_CASE("rotary_embedding on CUDA rejects positions on another device and f64") {
  Tensor x = Tensor::zeros({1, 2, 3, 4}, DType::f32, kGpu);
  CHECK_THROWS_WITH(rotary_embedding(x, Tensor::from_ints({0, 1, 2}, {1, 3})),
                    doctest::Contains("rotary_embedding: device mismatch: x f32[1, 2, 3, 4] on cuda:0 and positions "
                                      "i32[1, 3] on cpu"));
  CHECK_THROWS_WITH(rotary_embedding(x.to(DType::f64), Tensor()),
                    doctest::Contains("rotary_embedding: dtype f64 is not supported on cuda"));
}
