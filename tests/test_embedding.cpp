// embedding: gradients by finite differences (repeated ids, so the scatter-add accumulates), a
// plain-loop reference, a deterministic backward on the parallel path, and input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::gradcheck;
using ft::testing::random_f64;

namespace {

// n ids uniform in [0, vocab), from a fixed seed.
Tensor random_ids(const Shape& shape, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  std::vector<int32_t> ids;
  for (double u : rand(shape, gen, DType::f64).to_double_vector())
    ids.push_back(static_cast<int32_t>(std::min<int64_t>(static_cast<int64_t>(u * vocab), vocab - 1)));
  return Tensor::from_ints(ids, shape);
}

// out[t, c] = weight[ids[t], c], in double.
std::vector<double> naive_embedding(const Tensor& ids, const Tensor& weight) {
  std::vector<int32_t> id = ids.to_int_vector();
  std::vector<double> w = weight.to_double_vector(), out;
  const int64_t channels = weight.size(1);
  for (int32_t v : id)
    for (int64_t c = 0; c < channels; ++c) out.push_back(w[v * channels + c]);
  return out;
}

const testing::OpFn embedding_fn = [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); };

}  // namespace

TEST_CASE("embedding gradient matches finite differences, with repeated ids") {
  Tensor ids = Tensor::from_ints({1, 4, 1, 0, 4, 4}, {2, 3});
  CHECK(gradcheck(embedding_fn, {ids, random_f64({5, 3}, 1)}) < 1e-6);
}

TEST_CASE("embedding forward matches a plain gather, in f64 and f32") {
  Tensor ids = random_ids({2, 3}, 6, 2);
  Tensor weight = random_f64({6, 4}, 3);
  Tensor out = embedding(ids, weight);
  CHECK(out.shape() == Shape{2, 3, 4});
  CHECK(out.to_double_vector() == naive_embedding(ids, weight));
  CHECK(testing::fp32_vs_fp64_error(embedding_fn, {ids, weight}) < 1e-5);
  // A 0-d id picks one row.
  Tensor one = embedding(Tensor::from_ints({5}, {}), weight);
  CHECK(one.shape() == Shape{4});
  CHECK(one.to_double_vector() == naive_embedding(Tensor::from_ints({5}, {1}), weight));
}

TEST_CASE("embedding backward on the parallel path equals a sequential scatter-add exactly") {
  // V * C above the kernel's threshold, so rows are shared among threads; many ids repeat.
  const int64_t vocab = 300, channels = 200, tokens = 600;
  Tensor ids = random_ids({tokens}, vocab, 4);
  Tensor weight = random_f64({vocab, channels}, 5).set_requires_grad(true);
  Tensor dout = random_f64({tokens, channels}, 6);
  sum(mul(embedding(ids, weight), dout)).backward();

  // Summed in position order, as the kernel promises: bit-identical in f64.
  std::vector<double> expected(vocab * channels, 0.0), d = dout.to_double_vector();
  std::vector<int32_t> id = ids.to_int_vector();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < channels; ++c) expected[id[t] * channels + c] += d[t * channels + c];
  CHECK(weight.grad().to_double_vector() == expected);
}

TEST_CASE("embedding rejects bad ids and inputs, naming the op and the shapes") {
  Tensor weight = random_f64({5, 3}, 7);
  CHECK_THROWS_WITH(embedding(Tensor::from_ints({0, 2, 1, 7}, {4}), weight),
                    doctest::Contains("embedding: token id 7 at position 3 is out of range [0, 5) for weight [5, 3]"));
  CHECK_THROWS_WITH(embedding(Tensor::from_ints({0, -1}, {2}), weight),
                    doctest::Contains("embedding: token id -1 at position 1 is out of range [0, 5)"));
  CHECK_THROWS_WITH(embedding(Tensor::from_vector({0, 1}, {2}), weight),
                    doctest::Contains("embedding: ids is f32[2] on cpu, expected dtype i32"));
  CHECK_THROWS_WITH(embedding(Tensor::from_ints({0}, {1}), random_f64({5}, 8)),
                    doctest::Contains("embedding: weight has shape [5], expected 2 dimensions"));
  CHECK_THROWS_WITH(embedding(Tensor::from_ints({0}, {1}), Tensor::zeros({5, 3}, DType::i32)),
                    doctest::Contains("embedding: weight is i32[5, 3] on cpu, expected a floating dtype"));
  int32_t blob[2] = {0, 1};
  Tensor gpu_ids = Tensor::from_blob(blob, {2}, DType::i32, Device::cuda(0));
  CHECK_THROWS_WITH(embedding(gpu_ids, weight),
                    doctest::Contains("embedding: device mismatch: ids i32[2] on cuda:0 and weight f64[5, 3] on cpu"));
}
