// The generator gives the same numbers on the GPU as on the CPU for the same seed and state.
#include <doctest/doctest.h>

#include "framework/random.h"

using namespace ft;

TEST_CASE("the same seed draws the same normals and uniforms on CPU and GPU") {
  Generator cpu(2026), gpu(2026);
  for (DType dtype : {DType::f32, DType::bf16}) {
    Tensor a = randn({4099}, cpu, dtype);
    Tensor b = randn({4099}, gpu, dtype, Device::cuda(0));
    CHECK(b.device() == Device::cuda(0));
    CHECK(a.to_double_vector() == b.to_double_vector());
    CHECK(rand({33}, cpu, dtype).to_double_vector() == rand({33}, gpu, dtype, Device::cuda(0)).to_double_vector());
  }
  CHECK(cpu.state() == gpu.state());
}
