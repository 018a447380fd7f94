// What the GPU op suites share: the same seeded random inputs on the GPU (in the dtype under
// test) and on the CPU (the very same values, in f64), the gradients an op's node gives for an
// upstream gradient on either device, the error bounds per dtype, and a scope for the TF32
// switch. Every suite poisons new GPU allocations, so an output element a kernel never writes
// is NaN and fails both the finiteness and the error checks.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/autograd.h"
#include "framework/cuda/caching_allocator.h"
#include "framework/cuda/matmul_settings.h"
#include "framework/ops.h"
#include "tests/support/gradcheck.h"

namespace ft::testing {

inline const Device kGpu = Device::cuda(0);
inline const DType kGpuDTypes[] = {DType::f32, DType::bf16, DType::f16};

// A tensor on the GPU in the dtype under test, and the same values in f64 on the CPU.
struct Twin {
  Tensor gpu, cpu;
};

// Normals of standard deviation `std` from `seed`, rounded to `dtype`.
inline Twin random_twin(const Shape& shape, DType dtype, uint64_t seed, double std = 1.0) {
  Generator gen(seed);
  Tensor values = scale(randn(shape, gen, DType::f64), std).to(dtype);
  return {values.to(kGpu), values.to(DType::f64)};
}

// Integers on both devices (i32): positions, segment ids.
inline Twin int_twin(const std::vector<int32_t>& values, const Shape& shape) {
  Tensor cpu = Tensor::from_ints(values, shape);
  return {cpu.to(kGpu), cpu};
}

// The output of f and the gradients of its inputs, on one device: the defined floating inputs
// become fresh leaves, trainable unless `frozen` says otherwise (their gradient comes back
// undefined), and the backward runs from sum(output * upstream), with upstream = normals from
// `seed` rounded to the output's dtype. On the GPU, where mul and sum may have no kernel yet,
// the output's own node is called with the upstream gradient instead: a suite tests one op,
// so that node's backward is the op's.
struct OpRun {
  Tensor out;
  std::vector<Tensor> grads;
};

inline OpRun run_with_gradients(const OpFn& f, std::vector<Tensor> inputs, DType dtype, uint64_t seed,
                                const std::vector<bool>& frozen) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && is_floating(inputs[i].dtype()))
      inputs[i] = inputs[i].clone().set_requires_grad(i >= frozen.size() || !frozen[i]);
  OpRun run{f(inputs), std::vector<Tensor>(inputs.size())};
  const Twin upstream = random_twin(run.out.shape(), dtype, seed);
  if (run.out.device().is_cpu()) {
    sum(mul(run.out, upstream.cpu)).backward();
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined()) run.grads[i] = inputs[i].grad();
    return run;
  }
  REQUIRE(run.out.grad_fn());
  NoGradGuard no_grad;
  const Node& node = *run.out.grad_fn();
  REQUIRE(node.inputs.size() == inputs.size());
  const std::vector<Tensor> node_grads = node.backward(upstream.gpu, node.needs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    REQUIRE(node.inputs[i].impl() == inputs[i].impl());  // the node is the op's own
    if (node.needs[i]) run.grads[i] = node_grads[i];
  }
  return run;
}

inline bool all_finite(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// The relative error (Frobenius norm) of a GPU result against its f64 CPU reference, after
// checking the shapes match and that the GPU wrote every element with a finite value.
inline double gpu_error(const Tensor& gpu, const Tensor& cpu) {
  REQUIRE(gpu.device() == kGpu);
  REQUIRE(gpu.shape() == cpu.shape());
  CHECK_MESSAGE(all_finite(gpu), "a NaN or inf (maybe an unwritten, poisoned element)");
  return relative_error(gpu, cpu);
}

// Relative error bounds against an f64 reference on random inputs: f32 as fp32 arithmetic
// gives; bf16 and f16 as rounding results to 8 and 11 significant bits gives (about 2e-3 and
// 3e-4 for one rounding, a few of them in a chain, times a margin).
inline double error_bound(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return 1e-2;
    case DType::f16:
      return 2e-3;
    default:
      return 1e-5;
  }
}

// Relative errors of an op on the GPU (inputs in the dtype under test) against the CPU in f64
// (the same input values), for the output and each input's gradient (0 where neither device
// gives one: a frozen input). An integer input (positions, segment ids) is
// not passed as an input: f picks its twin by the device of the tensors it gets.
struct OpErrors {
  double out = 0;
  std::vector<double> grads;
};

inline OpErrors compare_with_cpu(const OpFn& f, const std::vector<Twin>& inputs, DType dtype, uint64_t seed,
                                 const std::vector<bool>& frozen = {}) {
  std::vector<Tensor> on_gpu, on_cpu;
  for (const Twin& t : inputs) {
    on_gpu.push_back(t.gpu);
    on_cpu.push_back(t.cpu);
  }
  const OpRun gpu = run_with_gradients(f, on_gpu, dtype, seed, frozen);
  const OpRun cpu = run_with_gradients(f, on_cpu, dtype, seed, frozen);
  OpErrors errors{gpu_error(gpu.out, cpu.out), {}};
  for (size_t i = 0; i < inputs.size(); ++i) {
    REQUIRE(gpu.grads[i].defined() == cpu.grads[i].defined());
    errors.grads.push_back(gpu.grads[i].defined() ? gpu_error(gpu.grads[i], cpu.grads[i]) : 0.0);
  }
  return errors;
}

// Checks every error of a comparison against `bound`.
inline void check_errors(const OpErrors& e, double bound) {
  CHECK(e.out < bound);
  for (size_t i = 0; i < e.grads.size(); ++i) {
    CAPTURE(i);
    CHECK(e.grads[i] < bound);
  }
}

// TF32 rounds f32 products' inputs to 11 significant bits: about 5e-4, times a margin.
constexpr double kTf32Bound = 5e-3;

// Sets the TF32 switch for a scope and restores it after.
class AllowTf32 {
 public:
  explicit AllowTf32(bool allow) : previous_(cuda::allow_tf32()) { cuda::set_allow_tf32(allow); }
  ~AllowTf32() { cuda::set_allow_tf32(previous_); }
  AllowTf32(const AllowTf32&) = delete;
  AllowTf32& operator=(const AllowTf32&) = delete;

 private:
  bool previous_;
};

inline std::string dtype_text(DType dtype) { return dtype_name(dtype); }

}  // namespace ft::testing
