// embedding on CUDA against the CPU reference: the gather exactly, the weight gradient (sorted by
// id, summed per row in position order; both backward kernels, a large table's and a small one's)
// within the dtype's bound in f32, bf16 and f16 and bit for bit against the CPU's f32 in f32, the
// same bits on every run (token ids, and position ids repeated once per sequence), skewed ids (one
// id at 30%, the rest at the vocabulary's ends) over several segments of ids (several launches,
// fp32 sums handed on between them), views off a 16-byte boundary (the one-element path), ids out
// of range made harmless, and the errors of a wrong device or dtype.
#include <doctest/doctest.h>

#include <random>

#include "framework/cuda/caching_allocator.h"
#include "framework/cuda/context.h"
#include "kernels/embedding/embedding_cuda.h"
#include "tests/gpu/op_test_support.h"
#include "tests/support/error_message.h"

using namespace ft;
using namespace ft::testing;

namespace {

// Token ids as text has them: a few frequent ids take a third of the positions (many positions
// into one row of the gradient), the rest spread over the vocabulary, both ends included.
std::vector<int32_t> token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(vocab - 1));
  std::uniform_int_distribution<int32_t> frequent(0, static_cast<int32_t>(std::min<int64_t>(vocab, 10) - 1));
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = rng() % 3 == 0 ? frequent(rng) : any(rng);
  ids.front() = static_cast<int32_t>(vocab - 1);
  return ids;
}

// The backward launcher on a gradient that starts `offset` elements into dout_storage, called
// directly: through autograd the op only ever sees fresh (aligned) upstream gradients.
void backward_from_offset(Tensor& dweight, const Tensor& ids, const Tensor& dout_storage, int64_t offset, int64_t vocab,
                          int64_t channels) {
  const int64_t tokens = ids.numel();
  const auto bytes = static_cast<int64_t>(kernels::embedding_backward_workspace_bytes(tokens, vocab, channels));
  Tensor workspace = Tensor::empty({bytes}, DType::u8, kGpu);
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    kernels::embedding_backward_cuda<T>(dweight.data<T>(), ids.data<int32_t>(), dout_storage.data<T>() + offset, tokens,
                                        vocab, channels, workspace.raw_data(), cuda::context(0).stream);
  };
  if (dweight.dtype() == DType::f32)
    launch(float{});
  else if (dweight.dtype() == DType::bf16)
    launch(ft::bfloat16{});
  else
    launch(ft::half{});
}

struct Shapes {
  Shape ids;
  int64_t vocab, channels;
};

// Skewed ids: one id in the middle of the vocabulary at about 30% of the positions (thousands of
// positions summed into one row), the rest only at the vocabulary's two ends (the rows between
// are hit by nothing, whole blocks of them).
std::vector<int32_t> skewed_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> end(0, 15);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) {
    const int32_t e = end(rng);
    id = rng() % 10 < 3 ? static_cast<int32_t>(vocab / 2) : e < 8 ? e : static_cast<int32_t>(vocab - 16 + e);
  }
  return ids;
}

// The embedding of `ids` on CUDA against the CPU: the gather exact, the weight gradient finite
// and within one rounding of the CPU's, and in f32 the CPU's very bits (both devices add the
// same numbers in the same order).
void check_like_cpu(const Shapes& c, const std::vector<int32_t>& ids, DType dtype, Generator& gen) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(shape_str(c.ids));
  CAPTURE(c.vocab);
  CAPTURE(c.channels);
  Tensor ids_cpu = Tensor::from_ints(ids, c.ids), ids_gpu = ids_cpu.to(kGpu);
  Twin weight = random_leaves({c.vocab, c.channels}, dtype, gen);
  Tensor y = embedding(ids_gpu, weight.gpu), expected = embedding(ids_cpu, weight.cpu);
  CHECK(gpu_error(y, expected) == 0);  // a gather moves values unchanged

  Twin w = random_values(expected.shape(), dtype, gen);
  weighted_sum(y, w.gpu).backward();
  weighted_sum(expected, w.cpu).backward();
  CHECK(all_finite(weight.gpu.grad()));
  CHECK(gpu_error(weight.gpu.grad(), weight.cpu.grad()) <= one_rounding_tolerance(dtype));
  if (dtype != DType::f32) return;
  Tensor weight32 = weight.cpu.detach().to(DType::f32).set_requires_grad(true);
  weighted_sum(embedding(ids_cpu, weight32), w.cpu.to(DType::f32)).backward();
  CHECK(weight.gpu.grad().to_double_vector() == weight32.grad().to_double_vector());
}

}  // namespace

TEST_CASE("embedding on CUDA gathers rows exactly and sums their gradients as the CPU does") {
  cuda::set_poison_allocations(true);
  Generator gen(301);
  // GPT-2's token embedding over a batch (the large-table kernel); a table of 4000 rows (on a GPU
  // of 132 multiprocessors, 31 rows a block: the small-table kernel with most of a warp's rows);
  // then odd sizes: one id, one channel, a tail.
  const Shapes cases[] = {
      {{8, 1024}, 50257, 768}, {{16, 1024}, 4000, 768}, {{1}, 3, 5}, {{1023}, 3, 1}, {{3, 341}, 1023, 1023}};
  for (DType dtype : kGpuDTypes)
    for (const Shapes& c : cases) check_like_cpu(c, token_ids(shape_numel(c.ids), c.vocab, 7), dtype, gen);
}

TEST_CASE("the embedding gradient on CUDA is the same bits on every run") {
  Generator gen(302);
  const std::vector<int32_t> ids = token_ids(8 * 1024, 50257, 8);
  Tensor ids_gpu = Tensor::from_ints(ids, {8, 1024}, kGpu);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Tensor weight = random_values({50257, 768}, dtype, gen).gpu.set_requires_grad(true);
    Tensor w = random_values({8, 1024, 768}, dtype, gen).gpu;
    std::vector<double> first;
    for (int run = 0; run < 3; ++run) {
      weight.zero_grad();
      weighted_sum(embedding(ids_gpu, weight), w).backward();
      if (run == 0)
        first = weight.grad().to_double_vector();
      else
        CHECK(weight.grad().to_double_vector() == first);
    }
  }
}

TEST_CASE("the position table's gradient on CUDA, each id once per sequence, is the CPU's and the same bits") {
  cuda::set_poison_allocations(true);
  Generator gen(305);
  // GPT-2's position ids over a batch of 16 sequences: runs of 16 positions, 1024 apart.
  const int64_t seq = 1024, rows = 16 * seq, channels = 768;
  std::vector<int32_t> ids(rows);
  for (int64_t t = 0; t < rows; ++t) ids[t] = static_cast<int32_t>(t % seq);
  Tensor ids_cpu = Tensor::from_ints(ids, {rows}), ids_gpu = ids_cpu.to(kGpu);
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Twin weight = random_leaves({seq, channels}, dtype, gen);
    Twin w = random_values({rows, channels}, dtype, gen);
    weighted_sum(embedding(ids_cpu, weight.cpu), w.cpu).backward();
    std::vector<double> first;
    for (int run = 0; run < 3; ++run) {
      weight.gpu.zero_grad();
      weighted_sum(embedding(ids_gpu, weight.gpu), w.gpu).backward();
      if (run > 0) {
        CHECK(weight.gpu.grad().to_double_vector() == first);
        continue;
      }
      first = weight.gpu.grad().to_double_vector();
      CHECK(gpu_error(weight.gpu.grad(), weight.cpu.grad()) <= one_rounding_tolerance(dtype));
    }
    if (dtype != DType::f32) continue;
    Tensor weight32 = weight.cpu.detach().to(DType::f32).set_requires_grad(true);
    weighted_sum(embedding(ids_cpu, weight32), w.cpu.to(DType::f32)).backward();
    CHECK(first == weight32.grad().to_double_vector());
  }
}

TEST_CASE("the embedding gradient on CUDA of skewed ids, in one segment of ids and in several, is the CPU's bits in f32") {
  cuda::set_poison_allocations(true);
  Generator gen(307);
  // GPT-2's shapes (16384 ids: one segment, one launch); 140000 and 300000 ids (9 and 19
  // segments: the middle ones add to the fp32 sums in place); a table of 1000 rows (the
  // small-table kernel) in 16-byte packs, and with 7 channels (the one-element path), both in
  // segments and with thousands of positions in one row.
  const Shapes cases[] = {{{16 * 1024}, 50257, 768},
                          {{140000}, 5003, 24},
                          {{300000}, 50257, 16},
                          {{140000}, 1000, 64},
                          {{140000}, 1000, 7}};
  for (DType dtype : kGpuDTypes)
    for (const Shapes& c : cases) check_like_cpu(c, skewed_ids(shape_numel(c.ids), c.vocab, 11), dtype, gen);
}

TEST_CASE("embedding on CUDA reads a weight and a gradient that start off a 16-byte boundary") {
  cuda::set_poison_allocations(true);
  Generator gen(306);
  // Rows of 8 bf16 or 4 f32 would take the 16-byte loads; starting one element into the
  // storage they cannot, and the kernels must take the one-element path.
  const int64_t vocab = 37, channels = 64, tokens = 300;
  const std::vector<int32_t> ids = token_ids(tokens, vocab, 9);
  Tensor ids_gpu = Tensor::from_ints(ids, {tokens}, kGpu), ids_cpu = ids_gpu.to(Device::cpu());
  for (DType dtype : kGpuDTypes) {
    CAPTURE(dtype_name(dtype));
    Twin storage = random_values({vocab * channels + 1}, dtype, gen);
    Tensor weight_gpu = reshape(slice(storage.gpu, 0, 1, vocab * channels + 1), {vocab, channels});
    Tensor weight_cpu = reshape(slice(storage.cpu, 0, 1, vocab * channels + 1), {vocab, channels});
    REQUIRE(weight_gpu.storage_offset() == 1);
    weight_cpu.set_requires_grad(true);
    Tensor y = embedding(ids_gpu, weight_gpu), expected = embedding(ids_cpu, weight_cpu);
    CHECK(gpu_error(y, expected) == 0);

    // The gradient: an upstream view one element into its storage (autograd always hands the op
    // fresh tensors, so the launcher is called directly).
    Twin upstream = random_values({tokens * channels + 1}, dtype, gen);
    Tensor dweight = Tensor::empty({vocab, channels}, dtype, kGpu);
    backward_from_offset(dweight, ids_gpu, upstream.gpu, 1, vocab, channels);
    Tensor g_cpu = reshape(slice(upstream.cpu, 0, 1, tokens * channels + 1), {tokens, channels});
    weighted_sum(expected, g_cpu).backward();
    CHECK(gpu_error(dweight, weight_cpu.grad()) <= one_rounding_tolerance(dtype));
  }
}

TEST_CASE("embedding on CUDA gives zeros for ids out of range and adds nothing for them") {
  cuda::set_poison_allocations(true);
  Generator gen(303);
  const int64_t vocab = 7, channels = 5;
  const std::vector<int32_t> ids = {3, -1, 6, 7, 3, 0, 1 << 20, 6, -2147483647 - 1, 3, 2};
  Tensor weight = randn({vocab, channels}, gen, DType::f32, kGpu).set_requires_grad(true);
  Tensor w = randn({static_cast<int64_t>(ids.size()), channels}, gen, DType::f32, kGpu);
  Tensor y = embedding(Tensor::from_ints(ids, {static_cast<int64_t>(ids.size())}, kGpu), weight);
  weighted_sum(y, w).backward();
  CHECK_NOTHROW(cuda::synchronize(0));  // no out-of-bounds access was reported

  // The expected values by plain loops over positions.
  const std::vector<double> table = weight.to_double_vector(), upstream = w.to_double_vector();
  std::vector<double> expected_y(ids.size() * channels, 0.0), expected_grad(vocab * channels, 0.0);
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) continue;
    for (int64_t c = 0; c < channels; ++c) {
      expected_y[t * channels + c] = table[ids[t] * channels + c];
      expected_grad[ids[t] * channels + c] += upstream[t * channels + c];
    }
  }
  CHECK(y.to_double_vector() == expected_y);
  CHECK(testing::relative_error(weight.grad().to_double_vector(), expected_grad) <= 1e-6);
}

TEST_CASE("embedding on CUDA rejects ids on another device and dtypes without a kernel") {
  Generator gen(304);
  Tensor ids = Tensor::from_ints({0, 1}, {2});
  Tensor weight = randn({4, 3}, gen, DType::f32, kGpu);
  CHECK(testing::error_message([&] { embedding(ids, weight); }).find("embedding: device mismatch") !=
        std::string::npos);
  Tensor f64 = randn({4, 3}, gen, DType::f64, kGpu);
  CHECK(testing::error_message([&] { embedding(ids.to(kGpu), f64); }) ==
        "embedding: dtype f64 is not supported on cuda (expected f32, bf16 or f16)");
}
