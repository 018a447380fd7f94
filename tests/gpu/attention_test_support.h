// What the suites of the fused attention kernels (flash, cudnn) share: a problem, its random
// inputs twinned on both devices, the f64 reference from attention_cpu.h (out, lse, dq, dk, dv)
// and the checks that hold a kernel's results to it.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention/attention_cpu.h"
#include "tests/gpu/op_test_support.h"

namespace ft::testing {

constexpr double kInf = std::numeric_limits<double>::infinity();

// lse is fp32 arithmetic on exact products of the rounded inputs (nothing is rounded to 16 bits
// on its way): sums of up to 1024 exponentials and a log, ~1e-6 of values near log T, times a
// margin.
constexpr double kLseBound = 1e-4;
// The worst element (relative to the largest reference value) may be off by a few roundings of
// the largest; the norm-wise error is held to the dtype's table bound.
constexpr double kWorstFactor = 5;

struct AttentionProblem {
  kernels::AttentionShape shape;
  bool causal;
  std::vector<int32_t> segments;  // [batch, seq_len], or empty: none
};

inline float default_scale(const kernels::AttentionShape& s) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
}

inline Shape qkv_shape(const kernels::AttentionShape& s) { return {s.batch, s.heads, s.seq_len, s.head_dim}; }
inline Shape row_shape(const kernels::AttentionShape& s) { return {s.batch, s.heads, s.seq_len}; }

struct AttentionInputs {
  Twin q, k, v, d_out;
};

inline AttentionInputs random_attention_inputs(const kernels::AttentionShape& s, DType dtype, uint64_t seed) {
  const Shape shape = qkv_shape(s);
  return {random_twin(shape, dtype, seed), random_twin(shape, dtype, seed + 1), random_twin(shape, dtype, seed + 2),
          random_twin(shape, dtype, seed + 3)};
}

// A forward (out, lse) and the backward from d_out (dq, dk, dv).
struct AttentionResults {
  Tensor out, lse, dq, dk, dv;
};

// The reference in f64 from the same values. lse comes from the f64 scores and probabilities:
// p_ij = exp(s_ij - lse_i) for every key j that query i sees, so lse_i = s_ij - log p_ij, taken
// at the row's most probable key (the most accurate); +inf where the query sees no key.
inline AttentionResults reference_attention(const AttentionProblem& p, const AttentionInputs& in) {
  const kernels::AttentionShape& s = p.shape;
  const int64_t t = s.seq_len, d = s.head_dim;
  AttentionResults r{Tensor::empty(qkv_shape(s), DType::f64), Tensor::empty(row_shape(s), DType::f64),
                     Tensor::empty(qkv_shape(s), DType::f64), Tensor::empty(qkv_shape(s), DType::f64),
                     Tensor::empty(qkv_shape(s), DType::f64)};
  Tensor probs = Tensor::empty({s.batch, s.heads, t, t}, DType::f64);
  const kernels::AttentionMask mask{p.causal, p.segments.empty() ? nullptr : p.segments.data()};
  const double scale = default_scale(s);  // the kernels' float scale, exactly
  const double* q = in.q.cpu.data<double>();
  const double* k = in.k.cpu.data<double>();
  const double* pr = probs.data<double>();
  kernels::attention_forward_cpu<double>(s, mask, scale, q, k, in.v.cpu.data<double>(), probs.data<double>(),
                                         r.out.data<double>());
  double* lse = r.lse.data<double>();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < s.batch * s.heads * t; ++row) {
    const double* pi = pr + row * t;
    const int64_t j = std::max_element(pi, pi + t) - pi;
    if (pi[j] == 0) {
      lse[row] = kInf;
      continue;
    }
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) dot += q[row * d + c] * k[(row / t * t + j) * d + c];
    lse[row] = scale * dot - std::log(pi[j]);
  }
  kernels::attention_backward_cpu<double>(s, scale, q, k, in.v.cpu.data<double>(), pr, in.d_out.cpu.data<double>(),
                                          r.dq.data<double>(), r.dk.data<double>(), r.dv.data<double>());
  return r;
}

inline double largest_magnitude(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::abs(v));
  return m;
}

// got against its reference: finite everywhere, norm-wise within `bound`, the worst element
// within kWorstFactor * bound. Where the reference is all zeros (dq and dk at T = 1: one key, so
// the softmax has nothing to move) a relative error means nothing, and got must instead be small
// next to its O(1) inputs.
inline void check_attention_result(const char* what, const Tensor& got, const Tensor& expected, double bound) {
  CAPTURE(what);
  const Comparison c = compare(got, expected);
  INFO(c.str());
  CHECK_MESSAGE(all_finite(got), "a NaN or inf (maybe an unwritten, poisoned element)");
  CHECK(c.nonfinite == 0);
  if (largest_magnitude(expected) == 0) {
    CHECK(largest_magnitude(got) <= bound);
    return;
  }
  CHECK(c.relative <= bound);
  CHECK(c.worst <= kWorstFactor * bound);
}

// lse: +inf exactly where the reference has it (rows that see nothing), finite elsewhere, and
// within kLseBound there.
inline void check_lse(const Tensor& got, const Tensor& expected) {
  const std::vector<double> g = got.to_double_vector(), e = expected.to_double_vector();
  REQUIRE(g.size() == e.size());
  int64_t wrong = 0;
  for (size_t i = 0; i < g.size(); ++i) wrong += std::isinf(e[i]) ? g[i] != e[i] : !std::isfinite(g[i]);
  CAPTURE("lse");
  CHECK(wrong == 0);
  const Comparison c = compare(got, expected);  // over the entries finite in both
  INFO(c.str());
  CHECK(c.relative <= kLseBound);
}

// A kernel's five results against the reference's, within the dtype's bound.
inline void check_attention_results(const AttentionResults& got, const AttentionResults& expected, DType dtype) {
  const double bound = tolerance(dtype);
  check_attention_result("out", got.out, expected.out, bound);
  check_lse(got.lse, expected.lse);
  check_attention_result("dq", got.dq, expected.dq, bound);
  check_attention_result("dk", got.dk, expected.dk, bound);
  check_attention_result("dv", got.dv, expected.dv, bound);
}

}  // namespace ft::testing
