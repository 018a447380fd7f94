// attention (math form): a plain-loop reference with every kind of mask, the packing and
// padding properties that segment ids promise, gradients, fp32 against fp64, and input errors,
// among them what the flash and cudnn kernels refuse (their numbers are in tests/gpu/). And
// attention_packed_qkv: the composition GPT-2 writes by hand (values and gradients), its
// gradients against finite differences, and its errors.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/autograd.h"
#include "framework/ops.h"
#include "tests/support/gradcheck.h"

using namespace ft;
using ft::testing::random_f64;
using ft::testing::relative_error;

namespace {

// Straight from the definition, in double: for each query, softmax over the keys it sees of
// scale * q.k, then the weighted sum of values; zeros when it sees no key.
// segments: [B * T] ids, or empty for none.
std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                        const std::vector<int32_t>& segments, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  std::vector<double> qv = q.to_double_vector(), kv = k.to_double_vector(), vv = v.to_double_vector();
  std::vector<double> out(qv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const int64_t base = (b * H + h) * T * D;
        std::vector<double> weight(T, 0.0);
        double total = 0;
        for (int64_t j = 0; j < T; ++j) {
          bool visible = !causal || j <= i;
          if (!segments.empty())
            visible = visible && segments[b * T + i] >= 0 && segments[b * T + i] == segments[b * T + j];
          if (!visible) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qv[base + i * D + d] * kv[base + j * D + d];
          weight[j] = std::exp(scale * dot);
          total += weight[j];
        }
        for (int64_t j = 0; j < T; ++j)
          for (int64_t d = 0; d < D; ++d)
            if (weight[j] > 0) out[base + i * D + d] += weight[j] / total * vv[base + j * D + d];
      }
  return out;
}

struct Qkv {
  Tensor q, k, v;
};

Qkv random_qkv(const Shape& shape, uint64_t seed) {
  return {random_f64(shape, seed), random_f64(shape, seed + 1), random_f64(shape, seed + 2)};
}

ft::testing::OpFn attention_with(const AttentionOptions& options) {
  return [options](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], options); };
}

// Positions [start, end) of a [B, H, T, D] tensor's sequence dimension, as a new tensor.
Tensor tokens(const Tensor& x, int64_t start, int64_t end) { return slice(x, 2, start, end).contiguous(); }

}  // namespace

TEST_CASE("attention matches a plain-loop reference under every mask") {
  const Qkv x = random_qkv({2, 3, 6, 4}, 1);
  const std::vector<int32_t> segments = {0, 0, 1, 1, 1, -1, 0, 1, 1, 2, 2, 2};
  const Tensor segment_ids = Tensor::from_ints(segments, {2, 6});
  const double default_scale = 0.5;  // 1 / sqrt(4)
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    AttentionOptions plain{causal, Tensor(), 0.0};
    CHECK(relative_error(attention(x.q, x.k, x.v, plain).to_double_vector(),
                         reference_attention(x.q, x.k, x.v, causal, {}, default_scale)) < 1e-13);
    AttentionOptions packed{causal, segment_ids, 0.0};
    CHECK(relative_error(attention(x.q, x.k, x.v, packed).to_double_vector(),
                         reference_attention(x.q, x.k, x.v, causal, segments, default_scale)) < 1e-13);
    AttentionOptions scaled{causal, segment_ids, 0.3};
    CHECK(relative_error(attention(x.q, x.k, x.v, scaled).to_double_vector(),
                         reference_attention(x.q, x.k, x.v, causal, segments, 0.3)) < 1e-13);
  }
  // Large enough for the kernel to split heads among threads.
  const Qkv big = random_qkv({2, 4, 40, 16}, 40);
  CHECK(relative_error(attention(big.q, big.k, big.v).to_double_vector(),
                       reference_attention(big.q, big.k, big.v, true, {}, 0.25)) < 1e-13);
}

TEST_CASE("causal attention differs from bidirectional, and its first query sees only the first key") {
  const Qkv x = random_qkv({1, 2, 5, 4}, 4);
  Tensor causal = attention(x.q, x.k, x.v, {true, Tensor(), 0.0});
  Tensor bidirectional = attention(x.q, x.k, x.v, {false, Tensor(), 0.0});
  CHECK(relative_error(causal, bidirectional) > 1e-2);
  CHECK(relative_error(tokens(causal, 0, 1), tokens(x.v, 0, 1)) < 1e-15);
}

TEST_CASE("a packed row of two documents gives what each document gives alone") {
  const Qkv x = random_qkv({1, 2, 5, 4}, 7);
  const Tensor segment_ids = Tensor::from_ints({0, 0, 0, 1, 1}, {1, 5});
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    Tensor packed = attention(x.q, x.k, x.v, {causal, segment_ids, 0.0});
    for (auto [start, end] : {std::pair<int64_t, int64_t>{0, 3}, {3, 5}}) {
      Tensor alone =
          attention(tokens(x.q, start, end), tokens(x.k, start, end), tokens(x.v, start, end), {causal, Tensor(), 0.0});
      CHECK(relative_error(tokens(packed, start, end), alone) < 1e-14);
    }
  }
}

TEST_CASE("padding is zero, gets zero gradient, and leaves the real positions as if it were absent") {
  const Qkv x = random_qkv({1, 2, 5, 4}, 10);
  const Tensor weight = random_f64({1, 2, 5, 4}, 13);  // loss = sum(out * weight)
  const Tensor segment_ids = Tensor::from_ints({0, 0, 0, -1, -1}, {1, 5});
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    Tensor q = x.q.clone().set_requires_grad(true), k = x.k.clone().set_requires_grad(true),
           v = x.v.clone().set_requires_grad(true);
    Tensor padded = attention(q, k, v, {causal, segment_ids, 0.0});
    sum(mul(padded, weight)).backward();

    Tensor q3 = tokens(x.q, 0, 3).set_requires_grad(true), k3 = tokens(x.k, 0, 3).set_requires_grad(true),
           v3 = tokens(x.v, 0, 3).set_requires_grad(true);
    Tensor unpadded = attention(q3, k3, v3, {causal, Tensor(), 0.0});
    sum(mul(unpadded, tokens(weight, 0, 3))).backward();

    CHECK(relative_error(tokens(padded, 0, 3), unpadded) < 1e-14);
    for (double value : tokens(padded, 3, 5).to_double_vector()) CHECK(value == 0.0);
    for (auto [full, real] : {std::pair{q, q3}, {k, k3}, {v, v3}}) {
      CHECK(relative_error(tokens(full.grad(), 0, 3), real.grad()) < 1e-14);
      for (double value : tokens(full.grad(), 3, 5).to_double_vector()) CHECK(value == 0.0);
    }
  }
}

TEST_CASE("attention gradients match finite differences") {
  const Qkv x = random_qkv({2, 2, 5, 4}, 20);
  const Tensor segment_ids = Tensor::from_ints({0, 0, 0, 1, 1, 0, 0, 1, 1, -1}, {2, 5});
  CHECK(ft::testing::gradcheck(attention_with({true, segment_ids, 0.0}), {x.q, x.k, x.v}) < 1e-6);
  CHECK(ft::testing::gradcheck(attention_with({false, Tensor(), 0.0}), {x.q, x.k, x.v}) < 1e-6);
  CHECK(ft::testing::gradcheck(attention_with({false, segment_ids, 0.7}), {x.q, x.k, x.v}) < 1e-6);
}

TEST_CASE("attention in fp32 agrees with fp64") {
  const Qkv x = random_qkv({2, 2, 16, 8}, 30);
  CHECK(ft::testing::fp32_vs_fp64_error(attention_with({true, Tensor(), 0.0}), {x.q, x.k, x.v}) < 1e-5);
  CHECK(ft::testing::fp32_vs_fp64_error(attention_with({false, Tensor(), 0.0}), {x.q, x.k, x.v}) < 1e-5);
}

TEST_CASE("attention rejects bad inputs") {
  const Tensor q = Tensor::zeros({2, 2, 5, 4});
  CHECK_THROWS_WITH(attention(q, Tensor::zeros({2, 2, 6, 4}), q),
                    doctest::Contains("attention: k has shape [2, 2, 6, 4], expected [2, 2, 5, 4]"));
  CHECK_THROWS_WITH(attention(q, q, Tensor::zeros({2, 3, 5, 4})),
                    doctest::Contains("attention: v has shape [2, 3, 5, 4], expected [2, 2, 5, 4]"));
  CHECK_THROWS_WITH(attention(q, Tensor::zeros({2, 2, 5, 8}), q),
                    doctest::Contains("attention: head dimensions differ: q [2, 2, 5, 4], k [2, 2, 5, 8]"));
  CHECK_THROWS_WITH(attention(Tensor::zeros({2, 5, 4}), q, q),
                    doctest::Contains("attention: q has shape [2, 5, 4], expected 4 dimensions"));
  AttentionOptions short_ids{true, Tensor::from_ints({0, 0, 0, 0, 0, 0, 0, 0}, {2, 4}), 0.0};
  CHECK_THROWS_WITH(attention(q, q, q, short_ids),
                    doctest::Contains("attention: segment_ids has shape [2, 4], expected [2, 5]"));
  AttentionOptions float_ids{true, Tensor::zeros({2, 5}), 0.0};
  CHECK_THROWS_WITH(attention(q, q, q, float_ids),
                    doctest::Contains("attention: segment_ids is f32[2, 5] on cpu, expected dtype i32"));
  CHECK_THROWS_WITH(attention(q, Tensor::zeros({2, 2, 5, 4}, DType::f64), q),
                    doctest::Contains("attention: dtype mismatch: f32[2, 2, 5, 4] on cpu and f64[2, 2, 5, 4] on cpu"));
  float dummy[80] = {};
  Tensor gpu_v = Tensor::from_blob(dummy, {2, 2, 5, 4}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(attention(q, q, gpu_v),
                    doctest::Contains("attention: device mismatch: f32[2, 2, 5, 4] on cpu and f32[2, 2, 5, 4] on "
                                      "cuda:0"));
  int32_t dummy_ids[10] = {};
  AttentionOptions gpu_ids{true, Tensor::from_blob(dummy_ids, {2, 5}, DType::i32, Device::cuda(0)), 0.0};
  CHECK_THROWS_WITH(attention(q, q, q, gpu_ids),
                    doctest::Contains("attention: device mismatch: q f32[2, 2, 5, 4] on cpu and segment_ids "
                                      "i32[2, 5] on cuda:0"));
  const Tensor ints = Tensor::from_ints(std::vector<int32_t>(80, 1), {2, 2, 5, 4});
  CHECK_THROWS_WITH(attention(ints, ints, ints), doctest::Contains("attention: dtype i32"));
}

TEST_CASE("attention with kernel flash refuses, before any launch, what its kernels do not take") {
  AttentionOptions flash;
  flash.kernel = AttentionKernel::flash;
  const Tensor q = Tensor::zeros({1, 2, 3, 64});
  CHECK_THROWS_WITH(attention(q, q, q, flash),
                    doctest::Contains("attention: kernel flash runs on cuda, got q f32[1, 2, 3, 64] on cpu (use "
                                      "kernel math on the cpu)"));
  // Tensors that claim the GPU but are never read: the checks come first.
  float dummy[2 * 3 * 128] = {};
  const Tensor gpu_f32 = Tensor::from_blob(dummy, {1, 2, 3, 64}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(attention(gpu_f32, gpu_f32, gpu_f32, flash),
                    doctest::Contains("attention: kernel flash takes bf16 or f16, got q f32[1, 2, 3, 64] on cuda:0 "
                                      "(use kernel math for f32)"));
  for (int64_t head_dim : {32, 96, 256}) {
    const Tensor gpu_bf16 = Tensor::from_blob(dummy, {1, 1, 3, head_dim}, DType::bf16, Device::cuda(0));
    const std::string expected =
        str("attention: kernel flash takes head dim 64 or 128, got q bf16[1, 1, 3, ", head_dim, "] on cuda:0");
    CHECK_THROWS_WITH(attention(gpu_bf16, gpu_bf16, gpu_bf16, flash), doctest::Contains(expected.c_str()));
  }
}

TEST_CASE("attention with kernel cudnn refuses what flash refuses, segment ids, and a build without cuDNN") {
  AttentionOptions cudnn;
  cudnn.kernel = AttentionKernel::cudnn;
  CHECK_THROWS_WITH(
      attention(Tensor::zeros({1, 2, 3, 64}), Tensor::zeros({1, 2, 3, 64}), Tensor::zeros({1, 2, 3, 64}), cudnn),
      doctest::Contains("attention: kernel cudnn runs on cuda, got q f32[1, 2, 3, 64] on cpu (use "
                        "kernel math on the cpu)"));
  // Tensors that claim the GPU but are never read: the checks come first.
  float dummy[3 * 128] = {};
  const Tensor gpu_f32 = Tensor::from_blob(dummy, {1, 1, 3, 64}, DType::f32, Device::cuda(0));
  CHECK_THROWS_WITH(attention(gpu_f32, gpu_f32, gpu_f32, cudnn),
                    doctest::Contains("attention: kernel cudnn takes bf16 or f16, got q f32[1, 1, 3, 64] on cuda:0 "
                                      "(use kernel math for f32)"));
  const Tensor gpu_32 = Tensor::from_blob(dummy, {1, 1, 3, 32}, DType::bf16, Device::cuda(0));
  CHECK_THROWS_WITH(attention(gpu_32, gpu_32, gpu_32, cudnn),
                    doctest::Contains("attention: kernel cudnn takes head dim 64 or 128, got q bf16[1, 1, 3, 32]"));
  const Tensor gpu_bf16 = Tensor::from_blob(dummy, {1, 1, 3, 64}, DType::bf16, Device::cuda(0));
  int32_t ids[3] = {};
  cudnn.segment_ids = Tensor::from_blob(ids, {1, 3}, DType::i32, Device::cuda(0));
  CHECK_THROWS_WITH(attention(gpu_bf16, gpu_bf16, gpu_bf16, cudnn),
                    doctest::Contains("attention: kernel cudnn takes no segment_ids (packed or padded rows), got "
                                      "i32[1, 3] on cuda:0 (use kernel flash or math)"));
#ifndef FLASHTRAIN_HAS_CUDNN
  cudnn.segment_ids = Tensor();
  CHECK_THROWS_WITH(attention(gpu_bf16, gpu_bf16, gpu_bf16, cudnn),
                    doctest::Contains("attention: kernel cudnn is not in this build (cuDNN 9's headers were not found "
                                      "when it was configured; use kernel flash or math)"));
#endif
}

namespace {

// attention_packed_qkv spelled out as GPT-2 spelled it before the op existed: q, k and v sliced
// from qkv and split into heads, attention, the heads merged back.
Tensor composed_packed_qkv(const Tensor& qkv, int64_t heads, const AttentionOptions& options) {
  const int64_t b = qkv.size(0), t = qkv.size(1), c = qkv.size(2) / 3;
  auto split = [&](int64_t part) {
    return transpose(reshape(slice(qkv, 2, part * c, (part + 1) * c), {b, t, heads, c / heads}), 1, 2);
  };
  return reshape(transpose(attention(split(0), split(1), split(2), options), 1, 2), {b, t, c});
}

ft::testing::OpFn packed_qkv_with(int64_t heads, const AttentionOptions& options) {
  return [heads, options](const std::vector<Tensor>& in) { return attention_packed_qkv(in[0], heads, options); };
}

}  // namespace

TEST_CASE("attention_packed_qkv is the composition of slices, heads, attention and the merge, gradients included") {
  const int64_t heads = 3, head_dim = 4;
  const Tensor qkv = random_f64({2, 6, 3 * heads * head_dim}, 50);
  const Tensor weight = random_f64({2, 6, heads * head_dim}, 51);  // loss = sum(out * weight)
  const Tensor segment_ids = Tensor::from_ints({0, 0, 1, 1, 1, -1, 0, 1, 1, 2, 2, 2}, {2, 6});
  for (const AttentionOptions& options :
       {AttentionOptions{true, Tensor(), 0.0}, AttentionOptions{false, Tensor(), 0.0},
        AttentionOptions{true, segment_ids, 0.0}, AttentionOptions{false, segment_ids, 0.3}}) {
    CAPTURE(options.causal);
    CAPTURE(options.segment_ids.defined());
    CAPTURE(options.scale);
    const Tensor packed_in = qkv.clone().set_requires_grad(true), composed_in = qkv.clone().set_requires_grad(true);
    const Tensor packed = attention_packed_qkv(packed_in, heads, options);
    const Tensor composed = composed_packed_qkv(composed_in, heads, options);
    CHECK(packed.shape() == Shape{2, 6, heads * head_dim});
    CHECK(relative_error(packed, composed) < 1e-15);
    sum(mul(packed, weight)).backward();
    sum(mul(composed, weight)).backward();
    REQUIRE(packed_in.grad().defined());
    CHECK(packed_in.grad().shape() == qkv.shape());
    CHECK(relative_error(packed_in.grad(), composed_in.grad()) < 1e-15);
  }
}

TEST_CASE("attention_packed_qkv gradients match finite differences") {
  const Tensor qkv = random_f64({2, 5, 3 * 2 * 4}, 60);
  const Tensor segment_ids = Tensor::from_ints({0, 0, 0, 1, 1, 0, 0, 1, 1, -1}, {2, 5});
  CHECK(ft::testing::gradcheck(packed_qkv_with(2, {true, segment_ids, 0.0}), {qkv}) < 1e-6);
  CHECK(ft::testing::gradcheck(packed_qkv_with(2, {false, Tensor(), 0.0}), {qkv}) < 1e-6);
  CHECK(ft::testing::gradcheck(packed_qkv_with(1, {true, Tensor(), 0.7}), {qkv}) < 1e-6);
}

TEST_CASE("attention_packed_qkv rejects what does not split into q, k and v, and what the kernels refuse") {
  const Tensor qkv = Tensor::zeros({2, 5, 24});
  CHECK_THROWS_WITH(attention_packed_qkv(Tensor::zeros({2, 5, 2, 12}), 2),
                    doctest::Contains("attention_packed_qkv: qkv has shape [2, 5, 2, 12], expected 3 dimensions"));
  CHECK_THROWS_WITH(attention_packed_qkv(qkv, 0),
                    doctest::Contains("attention_packed_qkv: heads must be positive, got 0"));
  CHECK_THROWS_WITH(attention_packed_qkv(qkv, 3),
                    doctest::Contains("attention_packed_qkv: qkv f32[2, 5, 24] on cpu does not split into q, k and v "
                                      "of 3 heads (its last size must be a multiple of 3 * 3)"));
  AttentionOptions short_ids{true, Tensor::from_ints({0, 0, 0, 0, 0, 0, 0, 0}, {2, 4}), 0.0};
  CHECK_THROWS_WITH(attention_packed_qkv(qkv, 2, short_ids),
                    doctest::Contains("attention: segment_ids has shape [2, 4], expected [2, 5]"));
  AttentionOptions flash;
  flash.kernel = AttentionKernel::flash;
  CHECK_THROWS_WITH(attention_packed_qkv(Tensor::zeros({1, 3, 3 * 64}), 1, flash),
                    doctest::Contains("attention: kernel flash runs on cuda, got q f32[1, 1, 3, 64] on cpu (use "
                                      "kernel math on the cpu)"));
  // A tensor that claims the GPU but is never read: the checks come first.
  float dummy[3 * 3 * 32] = {};
  const Tensor gpu_bf16 = Tensor::from_blob(dummy, {1, 3, 3 * 32}, DType::bf16, Device::cuda(0));
  CHECK_THROWS_WITH(attention_packed_qkv(gpu_bf16, 1, flash),
                    doctest::Contains("attention: kernel flash takes head dim 64 or 128, got q bf16[1, 1, 3, 32]"));
  AttentionOptions cudnn;
  cudnn.kernel = AttentionKernel::cudnn;
  int32_t ids[3] = {};
  cudnn.segment_ids = Tensor::from_blob(ids, {1, 3}, DType::i32, Device::cuda(0));
  CHECK_THROWS_WITH(attention_packed_qkv(gpu_bf16, 1, cudnn),
                    doctest::Contains("attention: kernel cudnn takes no segment_ids"));
}
