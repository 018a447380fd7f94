// Seeded random numbers with explicit state. A Generator is (seed, offset): every draw of n
// numbers uses counters offset .. offset+n-1 of Philox (kernels/random/philox.h) and then
// advances the offset by n. Saving those two integers in a checkpoint and restoring them gives
// the same numbers afterwards, and the same seed gives the same numbers on CPU and GPU.
#pragma once

#include <cstdint>

#include "framework/tensor.h"

namespace ft {

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;
  bool operator==(const GeneratorState& o) const { return seed == o.seed && offset == o.offset; }
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_{seed, 0} {}
  GeneratorState state() const { return state_; }
  void set_state(const GeneratorState& s) { state_ = s; }
  // Reserves n counters and returns the first.
  uint64_t take(uint64_t n) {
    uint64_t first = state_.offset;
    state_.offset += n;
    return first;
  }
  uint64_t seed() const { return state_.seed; }

 private:
  GeneratorState state_;
};

// In-place fills of a contiguous floating tensor (no autograd), computed in fp32 and rounded to
// the tensor's dtype.
void uniform_(const Tensor& t, Generator& gen, double low = 0.0, double high = 1.0);
void normal_(const Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);

// New tensors filled from `gen`.
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32, Device device = Device::cpu());
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32, Device device = Device::cpu());

}  // namespace ft
