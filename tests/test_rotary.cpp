// rotary_embedding: a plain-loop reference, the properties that make it a position encoding
// (rotations keep norms, position 0 is the identity, q.k depends only on the offset),
// gradients, fp32 against fp64, and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;
using ft::testing::relative_error;

namespace {

// Rotates the pairs (x[i], x[i + D/2]) by pos * base^(-2i/D), straight from the definition.
// positions: [B * T], or empty for 0..T-1.
std::vector<double> reference_rotary(const Tensor& x, const std::vector<int32_t>& positions, double base) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), half = D / 2;
  std::vector<double> in = x.to_double_vector(), out(in.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const double pos = positions.empty() ? t : positions[b * T + t];
        const int64_t row = ((b * H + h) * T + t) * D;
        for (int64_t i = 0; i < half; ++i) {
          const double theta = pos * std::pow(base, -2.0 * i / D);
          out[row + i] = in[row + i] * std::cos(theta) - in[row + i + half] * std::sin(theta);
          out[row + i + half] = in[row + i + half] * std::cos(theta) + in[row + i] * std::sin(theta);
        }
      }
  return out;
}

ft::testing::OpFn rotary_with(double base) {
  return
      [base](const std::vector<Tensor>& in) { return rotary_embedding(in[0], in.size() > 1 ? in[1] : Tensor(), base); };
}

// The vector x [D] placed at one position: rotary_embedding of a [1, 1, 1, D] tensor.
std::vector<double> rotate_at(const Tensor& x, int32_t position) {
  Tensor one = reshape(x, {1, 1, 1, x.numel()});
  return rotary_embedding(one, Tensor::from_ints({position}, {1, 1})).to_double_vector();
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double total = 0;
  for (size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
  return total;
}

}  // namespace

TEST_CASE("rotary_embedding matches a plain-loop reference") {
  Tensor x = random_f64({2, 3, 5, 8}, 1);
  CHECK(relative_error(rotary_embedding(x, Tensor()).to_double_vector(), reference_rotary(x, {}, 10000.0)) < 1e-14);
  const std::vector<int32_t> packed = {0, 1, 2, 0, 1, 7, 8, 9, 10, 500};
  CHECK(relative_error(rotary_embedding(x, Tensor::from_ints(packed, {2, 5}), 100.0).to_double_vector(),
                       reference_rotary(x, packed, 100.0)) < 1e-14);
}

TEST_CASE("rotary_embedding keeps each pair's norm, and position 0 is the identity") {
  Tensor x = random_f64({2, 2, 6, 8}, 2);
  std::vector<double> in = x.to_double_vector(), out = rotary_embedding(x, Tensor()).to_double_vector();
  for (size_t row = 0; row < in.size(); row += 8)
    for (size_t i = 0; i < 4; ++i) {
      const double before = in[row + i] * in[row + i] + in[row + i + 4] * in[row + i + 4];
      const double after = out[row + i] * out[row + i] + out[row + i + 4] * out[row + i + 4];
      CHECK(after == doctest::Approx(before).epsilon(1e-13));
    }
  Tensor zeros = Tensor::from_ints(std::vector<int32_t>(12, 0), {2, 6});
  CHECK(rotary_embedding(x, zeros).to_double_vector() == in);
}

TEST_CASE("explicit positions 0..T-1 give the same as no positions") {
  Tensor x = random_f64({2, 2, 4, 6}, 3);
  Tensor counting = Tensor::from_ints({0, 1, 2, 3, 0, 1, 2, 3}, {2, 4});
  CHECK(rotary_embedding(x, counting).to_double_vector() == rotary_embedding(x, Tensor()).to_double_vector());
}

TEST_CASE("rotated q.k depends only on the offset between the positions") {
  Tensor q = random_f64({8}, 4), k = random_f64({8}, 5);
  const double at_offset_3 = dot(rotate_at(q, 3), rotate_at(k, 0));
  CHECK(dot(rotate_at(q, 7), rotate_at(k, 4)) == doctest::Approx(at_offset_3).epsilon(1e-12));
  CHECK(dot(rotate_at(q, 1003), rotate_at(k, 1000)) == doctest::Approx(at_offset_3).epsilon(1e-12));
  CHECK(dot(rotate_at(q, 4), rotate_at(k, 0)) != doctest::Approx(at_offset_3).epsilon(1e-6));
}

TEST_CASE("rotary_embedding gradients match finite differences") {
  CHECK(ft::testing::gradcheck(rotary_with(10000.0), {random_f64({2, 2, 5, 4}, 6)}) < 1e-6);
  Tensor packed = Tensor::from_ints({0, 1, 2, 0, 1, 3, 4, 5, 6, 7}, {2, 5});
  CHECK(ft::testing::gradcheck(rotary_with(10.0), {random_f64({2, 2, 5, 4}, 7), packed}) < 1e-6);
}

TEST_CASE("rotary_embedding in fp32 agrees with fp64") {
  std::vector<int32_t> far(2 * 16);
  for (size_t i = 0; i < far.size(); ++i) far[i] = 1000 + static_cast<int32_t>(i);
  CHECK(ft::testing::fp32_vs_fp64_error(rotary_with(10000.0),
                                        {random_f64({2, 2, 16, 8}, 8), Tensor::from_ints(far, {2, 16})}) < 1e-5);
}

TEST_CASE("rotary_embedding rejects bad inputs") {
  const Tensor x = Tensor::zeros({1, 2, 2, 4});
  CHECK_THROWS_WITH(rotary_embedding(Tensor::zeros({1, 1, 2, 3}), Tensor()),
                    doctest::Contains("rotary_embedding: x has shape [1, 1, 2, 3], expected [B, H, T, D] with D even"));
  CHECK_THROWS_WITH(rotary_embedding(Tensor::zeros({2, 2, 4}), Tensor()),
                    doctest::Contains("rotary_embedding: x has shape [2, 2, 4]"));
  CHECK_THROWS_WITH(rotary_embedding(x, Tensor::from_ints({0, 1, 2}, {1, 3})),
                    doctest::Contains("rotary_embedding: positions has shape [1, 3], expected [1, 2]"));
  CHECK_THROWS_WITH(rotary_embedding(x, Tensor::zeros({1, 2})),
                    doctest::Contains("rotary_embedding: positions is f32[1, 2] on cpu, expected dtype i32"));
  CHECK_THROWS_WITH(rotary_embedding(Tensor::zeros({1, 2, 2, 4}, DType::i32), Tensor()),
                    doctest::Contains("rotary_embedding: dtype i32"));
  CHECK_THROWS_WITH(rotary_embedding(x, Tensor(), 0.0), doctest::Contains("rotary_embedding: base is 0"));
  int32_t dummy_positions[2] = {};
  Tensor gpu_positions = Tensor::from_blob(dummy_positions, {1, 2}, DType::i32, Device::cuda(0));
  CHECK_THROWS_WITH(rotary_embedding(x, gpu_positions),
                    doctest::Contains("rotary_embedding: device mismatch: x f32[1, 2, 2, 4] on cpu and positions "
                                      "i32[1, 2] on cuda:0"));
}
