#include "framework/random.h"

#include "kernels/copy/copy_cpu.h"
#include "kernels/random/philox.h"

namespace ft {
namespace {

// Draws on the CPU in fp32, then converts and moves; the numbers do not depend on the device.
template <class Draw>
void fill_from(const Tensor& t, Draw draw) {
  FT_CHECK(is_floating(t.dtype()), "random fill: ", describe(t), " is not floating point");
  FT_CHECK(t.is_contiguous(), "random fill: ", describe(t), " must be contiguous");
  const int64_t n = t.numel();
  Tensor host = Tensor::empty(t.shape(), DType::f32);
  float* p = host.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) p[i] = draw(static_cast<uint64_t>(i));
  t.copy_(host);
}

}  // namespace

void uniform_(const Tensor& t, Generator& gen, double low, double high) {
  const uint64_t seed = gen.seed(), first = gen.take(t.numel());
  const float lo = static_cast<float>(low), span = static_cast<float>(high - low);
  fill_from(t, [=](uint64_t i) { return lo + span * kernels::philox_uniform(seed, first + i); });
}

void normal_(const Tensor& t, Generator& gen, double mean, double std) {
  const uint64_t seed = gen.seed(), first = gen.take(t.numel());
  const float m = static_cast<float>(mean), s = static_cast<float>(std);
  fill_from(t, [=](uint64_t i) { return m + s * kernels::philox_normal(seed, first + i); });
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  normal_(t, gen);
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  uniform_(t, gen);
  return t;
}

}  // namespace ft
