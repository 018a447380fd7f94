// What the GPU suites share to hold a CUDA result to its CPU reference: the same random values
// on both devices (the dtype under test on the GPU, the very same values in f64 on the CPU), an
// op's gradients for an upstream gradient on either device, one comparison (norm-wise relative
// error, worst element, non-finite mismatches), one table of bounds per dtype, and a TF32 scope.
// Every suite poisons new GPU allocations, so an element a kernel never writes is NaN: the
// comparison counts it apart, since one such element hides in a norm over millions.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/autograd.h"
#include "framework/cuda/caching_allocator.h"
#include "framework/cuda/matmul_settings.h"
#include "framework/ops.h"
#include "framework/random.h"
#include "tests/support/gradcheck.h"

namespace ft::testing {

inline const Device kGpu = Device::cuda(0);
inline const DType kGpuDTypes[] = {DType::f32, DType::bf16, DType::f16};

// ---- Bounds -------------------------------------------------------------------------------

// The norm-wise relative error (and, where a suite checks it, the worst element's) allowed of a
// GPU result against its f64 CPU reference on random inputs: f32 as fp32 arithmetic gives; bf16
// and f16 as rounding to 8 and 11 significant bits gives (one rounding leaves about 1.1e-3 and
// 2.8e-4 rms, 2^-9 and 2^-12 at worst; a backward chains a few, times a margin). A tensor of one
// element has no rms averaging: three f16 roundings can reach 3 x 2^-11 = 1.5e-3 (seen on the
// H100 for the GELU gradient of a [1] tensor), hence 2e-3 for f16.
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 1e-5;
    case DType::bf16:
      return 1e-2;
    case DType::f16:
      return 2e-3;
    default:
      break;
  }
  FAIL("no GPU tolerance for dtype ", dtype_name(dtype));
  return 0;
}

// Elementwise ops, gathers and reductions round their fp32 result once, so their suites hold
// bf16 to half the table's bound (the f32 and f16 bounds are the table's).
constexpr double kOneRoundingBf16Bound = 5e-3;
inline double one_rounding_tolerance(DType dtype) {
  return dtype == DType::bf16 ? kOneRoundingBf16Bound : tolerance(dtype);
}

// TF32 rounds f32 products' inputs to 11 significant bits: about 5e-4, times a margin.
constexpr double kTf32Bound = 5e-3;

// ---- Comparison ---------------------------------------------------------------------------

struct Comparison {
  double relative = 0;    // ||got - expected|| / max(||got||, ||expected||), 0 when both are 0
  double worst = 0;       // max |got - expected| / max |expected|
  int64_t nonfinite = 0;  // elements finite in one tensor and not in the other

  std::string str() const {
    return ft::str("relative error ", relative, ", worst element ", worst, ", ", nonfinite, " non-finite mismatches");
  }
};

// A contiguous f64 copy on the host (the tensor itself when it already is one): every dtype
// under test converts exactly.
inline Tensor host_f64(const Tensor& t) { return t.to(DType::f64).to(Device::cpu()).contiguous(); }

// Compares got with expected on the host in f64; the errors are taken over the elements finite
// in both.
inline Comparison compare(const Tensor& got, const Tensor& expected) {
  FT_CHECK(got.shape() == expected.shape(), "compare: shapes ", shape_str(got.shape()), " and ",
           shape_str(expected.shape()), " differ");
  const Tensor a = host_f64(got), b = host_f64(expected);
  const double* pa = a.data<double>();
  const double* pb = b.data<double>();
  const int64_t n = a.numel();
  double diff = 0, norm_a = 0, norm_b = 0, max_diff = 0, max_b = 0;
  int64_t nonfinite = 0;
#pragma omp parallel for reduction(+ : diff, norm_a, norm_b, nonfinite) reduction(max : max_diff, max_b)
  for (int64_t i = 0; i < n; ++i) {
    const double x = pa[i], y = pb[i];
    if (std::isfinite(x) != std::isfinite(y)) ++nonfinite;
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    diff += (x - y) * (x - y);
    norm_a += x * x;
    norm_b += y * y;
    max_diff = std::max(max_diff, std::abs(x - y));
    max_b = std::max(max_b, std::abs(y));
  }
  Comparison c;
  const double norm = std::sqrt(std::max(norm_a, norm_b));
  c.relative = norm == 0 ? 0 : std::sqrt(diff) / norm;
  c.worst = max_b == 0 ? max_diff : max_diff / max_b;
  c.nonfinite = nonfinite;
  return c;
}

// The norm-wise relative error of a GPU result against its reference, after requiring that it
// is on the GPU in the reference's shape and checking that it wrote every element finite.
inline double gpu_error(const Tensor& gpu, const Tensor& expected) {
  REQUIRE(gpu.device() == kGpu);
  REQUIRE(gpu.shape() == expected.shape());
  const Comparison c = compare(gpu, expected);
  CHECK_MESSAGE(c.nonfinite == 0, "a NaN or inf (maybe an unwritten, poisoned element)");
  return c.relative;
}

// Checks got against expected: no non-finite mismatch, the norm-wise relative error within
// `bound` and the worst element within `worst_bound`.
inline void check_close(const Tensor& got, const Tensor& expected, double bound, double worst_bound) {
  const Comparison c = compare(got, expected);
  INFO(c.str());
  CHECK(c.nonfinite == 0);
  CHECK(c.relative <= bound);
  CHECK(c.worst <= worst_bound);
}

// The layer_norm and add_layer_norm suites' check of each output and gradient: defined, on the
// GPU, in `dtype`, norm-wise within the dtype's bound and the single worst element within twice
// that (on the H100, f32 rows of 3 columns reached 1.3e-5 of the largest reference value: a
// normalisation over 3 values leaves little averaging).
inline void check_layer_norm_result(const char* what, const Tensor& got, const Tensor& expected, DType dtype) {
  CAPTURE(what);
  REQUIRE(got.defined());
  CHECK(got.device() == kGpu);
  CHECK(got.dtype() == dtype);
  check_close(got, expected, tolerance(dtype), 2 * tolerance(dtype));
}

inline bool all_finite(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// ---- Inputs -------------------------------------------------------------------------------

// A tensor on the GPU in the dtype under test, and the same values in f64 on the CPU.
struct Twin {
  Tensor gpu, cpu;
};

// Normals of standard deviation `std` from `seed` (drawn in f64), rounded to `dtype`.
inline Twin random_twin(const Shape& shape, DType dtype, uint64_t seed, double std = 1.0) {
  Generator gen(seed);
  Tensor values = scale(randn(shape, gen, DType::f64), std).to(dtype);
  return {values.to(kGpu), values.to(DType::f64)};
}

// Normals N(mean, std^2) from `gen` (Philox, fp32), rounded to `dtype`.
inline Twin random_values(const Shape& shape, DType dtype, Generator& gen, double mean = 0.0, double std = 1.0) {
  Tensor drawn = Tensor::empty(shape, DType::f32);
  normal_(drawn, gen, mean, std);
  Tensor rounded = drawn.to(dtype);
  return {rounded.to(kGpu), rounded.to(DType::f64)};
}

// As above, both leaves that require grad.
inline Twin random_leaves(const Shape& shape, DType dtype, Generator& gen, double mean = 0.0, double std = 1.0) {
  Twin v = random_values(shape, dtype, gen, mean, std);
  v.gpu.set_requires_grad(true);
  v.cpu.set_requires_grad(true);
  return v;
}

// Integers on both devices (i32): positions, segment ids.
inline Twin int_twin(const std::vector<int32_t>& values, const Shape& shape) {
  Tensor cpu = Tensor::from_ints(values, shape);
  return {cpu.to(kGpu), cpu};
}

// A fresh leaf with t's values, converted to `dtype` on `device`.
inline Tensor leaf(const Tensor& t, DType dtype, Device device, bool requires_grad = true) {
  Tensor out = t.to(dtype).to(device).detach();
  out.set_requires_grad(requires_grad);
  return out;
}

// A GPU copy of t that is contiguous, so kernels use it in place, but starts one element into
// its storage, so its rows are not 16-byte aligned.
inline Tensor misaligned_copy(const Tensor& t) {
  Tensor storage = Tensor::empty({t.numel() + 1}, t.dtype(), kGpu);
  Tensor shifted = storage.as_strided(t.shape(), contiguous_strides(t.shape()), 1);
  shifted.copy_(t);
  REQUIRE(shifted.is_contiguous());
  return shifted;
}

// sum(y * w): a scalar whose gradient with respect to y is exactly w, so a backward pass from it
// feeds the op under test a random upstream gradient.
inline Tensor weighted_sum(const Tensor& y, const Tensor& w) { return sum(mul(y, w)); }

// ---- An op's output and gradients on both devices -----------------------------------------

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
