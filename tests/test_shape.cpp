// reshape, transpose, slice, concat, contiguous: forward layouts, gradients, errors.
#include <doctest/doctest.h>

#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::fp32_vs_fp64_error;
using ft::testing::gradcheck;
using ft::testing::random_f64;

TEST_CASE("shape ops: gradients through views and copies") {
  Tensor x = random_f64({2, 3, 4}, 1), y = random_f64({2, 2, 4}, 2);
  std::vector<ft::testing::OpFn> fns = {
      [](const std::vector<Tensor>& v) { return reshape(v[0], {4, -1}); },
      [](const std::vector<Tensor>& v) { return transpose(v[0], 0, 2); },
      [](const std::vector<Tensor>& v) { return slice(v[0], 1, 1, 3); },
      [](const std::vector<Tensor>& v) { return contiguous(transpose(v[0], 1, 2)); },
      // reshape of a non-contiguous view copies.
      [](const std::vector<Tensor>& v) { return reshape(transpose(v[0], 1, 2), {2, 12}); },
  };
  for (size_t i = 0; i < fns.size(); ++i) {
    CAPTURE(i);
    CHECK(gradcheck(fns[i], {x}) < 1e-6);
    CHECK(fp32_vs_fp64_error(fns[i], {x}) < 1e-5);
  }
  ft::testing::OpFn cat = [](const std::vector<Tensor>& v) { return concat({v[0], v[1], v[0]}, 1); };
  CHECK(gradcheck(cat, {x, y}) < 1e-6);
  CHECK(fp32_vs_fp64_error(cat, {x, y}) < 1e-5);
}

TEST_CASE("shape ops: forward layouts") {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3}, DType::f64);
  CHECK(reshape(x, {3, -1}).shape() == Shape{3, 2});
  CHECK(transpose(x, 0, 1).contiguous().to_double_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(reshape(transpose(x, 0, 1), {6}).to_double_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(slice(x, 0, 1, 2).to_double_vector() == std::vector<double>{3, 4, 5});
  Tensor z = Tensor::from_vector({9, 8}, {2, 1}, DType::f64);
  CHECK(concat({x, z}, 1).to_double_vector() == std::vector<double>{0, 1, 2, 9, 3, 4, 5, 8});
  CHECK(concat({x, x}, 0).to_double_vector() == std::vector<double>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5});
  CHECK(concat({x, z}, -1).shape() == Shape{2, 4});
}

TEST_CASE("shape ops: errors") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH(reshape(x, {4, 2}), doctest::Contains("reshape: cannot reshape [2, 3] (6 elements) into [4, 2]"));
  CHECK_THROWS_WITH(reshape(x, {-1, -1}), doctest::Contains("more than one -1"));
  CHECK_THROWS_WITH(reshape(x, {4, -1}), doctest::Contains("cannot reshape [2, 3] into [4, -1]"));
  CHECK_THROWS_WITH(transpose(x, 0, 2), doctest::Contains("transpose: dimension 2 out of range"));
  CHECK_THROWS_WITH(slice(x, 1, 2, 1), doctest::Contains("slice: range [2, 1) out of bounds for dimension 1 of [2, 3]"));
  CHECK_THROWS_WITH(concat({x, Tensor::zeros({3, 3})}, 1),
                    doctest::Contains("concat: [2, 3] and [3, 3] differ outside dimension 1"));
  CHECK_THROWS_WITH(concat({x, Tensor::zeros({2, 3}, DType::f64)}, 0), doctest::Contains("concat: dtype mismatch"));
  CHECK_THROWS_WITH(concat({}, 0), doctest::Contains("concat: no tensors"));
}
