// Tensors: factories, views without copies, dtype conversions, strided copies, and the RNG.
#include <doctest/doctest.h>

#include <cmath>

#include "framework/ops.h"
#include "kernels/random/philox.h"

using namespace ft;

TEST_CASE("factories fill and report shape, strides and dtype") {
  Tensor t = Tensor::full({2, 3}, 1.5, DType::f64);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.numel() == 6);
  CHECK(t.is_contiguous());
  for (double v : t.to_double_vector()) CHECK(v == 1.5);
  CHECK(Tensor::zeros({0, 4}).numel() == 0);
  CHECK_THROWS_AS(Tensor::empty({2, -1}), Error);
  CHECK_THROWS_WITH(Tensor::from_vector({1, 2, 3}, {2, 2}), doctest::Contains("3 values for shape [2, 2]"));
}

TEST_CASE("transpose and slice are views over the same storage") {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tt = transpose(t, 0, 1);
  CHECK(tt.storage() == t.storage());
  CHECK(!tt.is_contiguous());
  CHECK(tt.contiguous().to_double_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor s = slice(t, 1, 1, 3);
  CHECK(s.storage() == t.storage());
  CHECK(s.to_double_vector() == std::vector<double>{1, 2, 4, 5});
  // Writing through the base shows in the view.
  t.data<float>()[4] = 40;
  CHECK(s.to_double_vector() == std::vector<double>{1, 2, 40, 5});
  Tensor r = reshape(t, {3, 2});
  CHECK(r.storage() == t.storage());
  CHECK_THROWS_WITH(slice(t, 1, 2, 4), doctest::Contains("out of bounds"));
}

TEST_CASE("copy_ gathers a strided view, including one of its own storage") {
  const Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8}, {3, 3});
  const Tensor other = Tensor::empty({3, 3});
  other.copy_(transpose(t, 0, 1));  // from other memory: gathered straight into the destination
  CHECK(other.to_double_vector() == std::vector<double>{0, 3, 6, 1, 4, 7, 2, 5, 8});
  t.copy_(transpose(t, 0, 1));  // from its own memory: through a temporary, so no element is read after it is written
  CHECK(t.to_double_vector() == std::vector<double>{0, 3, 6, 1, 4, 7, 2, 5, 8});
}

TEST_CASE("dtype conversions round to nearest even and keep specials") {
  CHECK(to_float(to_bfloat16(1.0f)) == 1.0f);
  CHECK(to_float(to_half(1.0f)) == 1.0f);
  // 1 + 2^-8 is halfway between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
  CHECK(to_float(to_bfloat16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
  CHECK(to_float(to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8))) == 1.0f + std::ldexp(1.0f, -6));
  // Half: 65504 is the largest finite value; 65520 rounds to infinity.
  CHECK(to_float(to_half(65504.0f)) == 65504.0f);
  CHECK(std::isinf(to_float(to_half(65520.0f))));
  CHECK(to_float(to_half(std::ldexp(1.0f, -24))) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(std::isnan(to_float(to_half(NAN))));
  CHECK(std::isnan(to_float(to_bfloat16(NAN))));
  // Every half value survives half -> float -> half.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    half h{static_cast<uint16_t>(bits)};
    float f = to_float(h);
    if (std::isnan(f)) continue;
    REQUIRE(to_half(f).bits == h.bits);
  }
  Tensor x = Tensor::from_vector({0.1, -2.5, 3.0}, {3}, DType::f64);
  CHECK(x.to(DType::bf16).to(DType::f32).to_double_vector() ==
        std::vector<double>{to_float(to_bfloat16(0.1f)), -2.5, 3.0});
  CHECK(x.to(DType::i32).to_int_vector() == std::vector<int32_t>{0, -2, 3});
}

TEST_CASE("the generator is reproducible and its state restores exactly") {
  Generator a(7), b(7);
  Tensor x = randn({1000}, a);
  Tensor y = randn({1000}, b);
  CHECK(x.to_double_vector() == y.to_double_vector());
  GeneratorState saved = a.state();
  Tensor next = rand({10}, a);
  Generator c(123);
  c.set_state(saved);
  CHECK(rand({10}, c).to_double_vector() == next.to_double_vector());
  // Moments of 1000 normals: mean within 4 standard errors of 0, variance near 1.
  double mean = 0, var = 0;
  for (double v : x.to_double_vector()) mean += v / 1000;
  for (double v : x.to_double_vector()) var += (v - mean) * (v - mean) / 999;
  CHECK(std::abs(mean) < 4 / std::sqrt(1000.0));
  CHECK(std::abs(var - 1) < 0.15);
  // Different seeds differ.
  Generator d(8);
  CHECK(randn({10}, d).to_double_vector() != slice(y, 0, 0, 10).contiguous().to_double_vector());
}

TEST_CASE("philox matches the published known-answer vector") {
  // Random123's kat_vectors: philox4x32_10 with counter = 0 and key = 0.
  kernels::PhiloxBlock b = kernels::philox4x32(0, 0);
  CHECK(b.x[0] == 0x6627e8d5u);
  CHECK(b.x[1] == 0xe169c58du);
  CHECK(b.x[2] == 0xbc57ac4cu);
  CHECK(b.x[3] == 0x9b00dbd8u);
}

TEST_CASE("a tensor from a blob borrows memory and reports its device") {
  float data[4] = {1, 2, 3, 4};
  Tensor t = Tensor::from_blob(data, {2, 2}, DType::f32, Device::cpu());
  CHECK(t.raw_data() == data);
  CHECK(t.to_double_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(parse_device("cuda:1") == Device::cuda(1));
  CHECK_THROWS_WITH(parse_device("gpu"), doctest::Contains("expected cpu, cuda or cuda:N"));
}
