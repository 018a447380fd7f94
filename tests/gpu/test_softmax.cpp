// softmax on CUDA (a warp per row, online max) against the CPU in f64 from the same inputs,
// forward and backward, in f32, bf16 and f16: attention's and the vocabulary's row lengths, odd
// ones around the warp width, and rows with -inf entries (all -inf: zeros, not NaN).
#include <doctest/doctest.h>

#include <limits>

#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

const OpFn kSoftmax = [](const std::vector<Tensor>& x) { return softmax(x[0]); };

}  // namespace

TEST_CASE("softmax at attention's and the vocabulary's sizes, and odd ones") {
  cuda::set_poison_allocations(true);
  const Shape shapes[] = {{2 * 12 * 1024, 1024}, {16, 50257}, {1, 1}, {3, 1}, {7, 31}, {5, 33}, {9, 1023},
                          {2, 3, 1025}};
  uint64_t seed = 10;
  for (DType dtype : kGpuDTypes)
    for (const Shape& shape : shapes) {
      CAPTURE(dtype_text(dtype));
      CAPTURE(shape_str(shape));
      // A standard deviation of 3: logits spread like a trained model's, so the max matters.
      check_errors(compare_with_cpu(kSoftmax, {random_twin(shape, dtype, seed += 2, 3.0)}, dtype, seed + 1),
                   tolerance(dtype));
    }
}

TEST_CASE("softmax: -inf entries get probability 0, and a row of -inf is zeros") {
  cuda::set_poison_allocations(true);
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t cols = 70;  // more than two warp widths: every lane sees -inf and finite entries
  std::vector<double> values(4 * cols);
  for (int64_t j = 0; j < cols; ++j) {
    values[j] = -inf;                                          // row 0: nothing left
    values[cols + j] = j % 2 ? -inf : 0.1 * j;                 // row 1: every other entry
    values[2 * cols + j] = j == 37 ? 2.0 : -inf;               // row 2: one entry, probability 1
    values[3 * cols + j] = j < 40 ? -inf : std::sin(1.0 * j);  // row 3: a -inf prefix
  }
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_text(dtype));
    Tensor typed = Tensor::from_vector(values, {4, cols}, dtype);
    const Twin x{typed.to(kGpu), typed.to(DType::f64)};
    check_errors(compare_with_cpu(kSoftmax, {x}, dtype, 20), tolerance(dtype));
    const std::vector<double> y = softmax(x.gpu).to_double_vector();
    for (int64_t j = 0; j < cols; ++j) {
      CHECK(y[j] == 0);
      CHECK(y[2 * cols + j] == (j == 37 ? 1.0 : 0.0));
      if (j % 2) CHECK(y[cols + j] == 0);
    }
  }
}

TEST_CASE("softmax on CUDA rejects f64") {
  CHECK_THROWS_WITH(softmax(Tensor::zeros({2, 3}, DType::f64, kGpu)),
                    doctest::Contains("softmax: dtype f64 is not supported on cuda"));
}
