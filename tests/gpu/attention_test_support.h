// What the suites of the fused attention kernels (flash, cudnn) share: a problem, its random
// inputs twinned on both devices, the layouts the kernels read and write in place, the f64
// reference from attention_cpu.h (out, lse, dq, dk, dv) and the checks that hold a kernel's
// results to it.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/attention/attention_cpu.h"
#include "kernels/attention/attention_strides.h"
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

// ---- Layouts ------------------------------------------------------------------------------

// Where a run keeps its [B, H, T, D] operands. packed: each contiguous. heads_last: each in its
// own [B, T, H, D] memory (separate q, k, v projections split into heads, as DistilBERT's; the
// results of the op). packed_qkv: q, k and v side by side in one [B, T, 3, H, D] buffer (GPT-2's
// c_attn output), dq, dk and dv likewise in another (the gradient attention_packed_qkv writes),
// out and d_out heads-last. scattered: each in its own [H, T, B, D + 8] memory, so the batch,
// head and token strides differ from the packed ones and from each other and rows are not D
// apart; the 8 extra values of an input row are NaN, so a kernel that read them would show it.
enum class Layout { packed, heads_last, packed_qkv, scattered };

inline const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::packed:
      return "packed";
    case Layout::heads_last:
      return "heads_last";
    case Layout::packed_qkv:
      return "packed_qkv";
    case Layout::scattered:
      return "scattered";
  }
  return "?";
}

inline kernels::AttentionStrides strides_of(const Tensor& x) {
  const Shape& s = x.strides();
  return {s[0], s[1], s[2], s[3]};
}

// Part `part` of memory laid out as [B, T, parts, H, D], as a [B, H, T, D] view (parts 1: heads
// last; parts 3: q, k and v side by side).
inline Tensor heads_last_view(const Tensor& memory, const kernels::AttentionShape& s, int64_t parts, int64_t part) {
  const int64_t width = s.heads * s.head_dim;
  return memory.as_strided(qkv_shape(s), {s.seq_len * parts * width, s.head_dim, parts * width, 1}, part * width);
}

// x ([B, H, T, D] on the host) as contiguous [B, T, 1, H, D] memory.
inline Tensor to_heads_last(const Tensor& x) {
  return reshape(transpose(x, 1, 2), {x.size(0), x.size(2), 1, x.size(1), x.size(3)});
}

constexpr int64_t kScatterPad = 8;  // values after each row of a scattered operand

inline Tensor scattered_view(const Tensor& memory, const kernels::AttentionShape& s) {
  const int64_t row = s.head_dim + kScatterPad;
  return memory.as_strided(qkv_shape(s), {row, s.seq_len * s.batch * row, s.batch * row, 1}, 0);
}

// x ([B, H, T, D] on the host) in `dtype` on the GPU, scattered, NaN between the rows.
inline Tensor to_scattered(const Tensor& x, const kernels::AttentionShape& s, DType dtype) {
  const Tensor moved = transpose(transpose(x, 0, 1), 1, 2);  // [H, T, B, D]
  const Tensor pad =
      Tensor::full({s.heads, s.seq_len, s.batch, kScatterPad}, std::numeric_limits<double>::quiet_NaN(), DType::f64);
  return scattered_view(concat({moved, pad}, 3).to(dtype).to(kGpu), s);
}

// The inputs of a run in `dtype` on the GPU and its uninitialised (poisoned) results, laid out as
// `layout` says.
struct AttentionOperands {
  Tensor q, k, v, d_out;
  AttentionResults results;
};

inline AttentionOperands place(const AttentionInputs& in, const kernels::AttentionShape& s, DType dtype,
                               Layout layout) {
  const Tensor lse = Tensor::empty(row_shape(s), DType::f32, kGpu);
  const Shape heads_last_memory{s.batch, s.seq_len, 1, s.heads, s.head_dim};
  auto heads_last = [&](const Twin& x) { return heads_last_view(to_heads_last(x.cpu).to(dtype).to(kGpu), s, 1, 0); };
  auto empty_heads_last = [&] { return heads_last_view(Tensor::empty(heads_last_memory, dtype, kGpu), s, 1, 0); };
  switch (layout) {
    case Layout::packed: {
      auto empty = [&] { return Tensor::empty(qkv_shape(s), dtype, kGpu); };
      return {in.q.gpu, in.k.gpu, in.v.gpu, in.d_out.gpu, {empty(), lse, empty(), empty(), empty()}};
    }
    case Layout::heads_last:
      return {heads_last(in.q),
              heads_last(in.k),
              heads_last(in.v),
              heads_last(in.d_out),
              {empty_heads_last(), lse, empty_heads_last(), empty_heads_last(), empty_heads_last()}};
    case Layout::packed_qkv: {
      const Tensor qkv =
          concat({to_heads_last(in.q.cpu), to_heads_last(in.k.cpu), to_heads_last(in.v.cpu)}, 2).to(dtype).to(kGpu);
      const Tensor d_qkv = Tensor::empty({s.batch, s.seq_len, 3, s.heads, s.head_dim}, dtype, kGpu);
      auto part = [&](const Tensor& memory, int64_t i) { return heads_last_view(memory, s, 3, i); };
      return {part(qkv, 0),
              part(qkv, 1),
              part(qkv, 2),
              heads_last(in.d_out),
              {empty_heads_last(), lse, part(d_qkv, 0), part(d_qkv, 1), part(d_qkv, 2)}};
    }
    case Layout::scattered: {
      auto scattered = [&](const Twin& x) { return to_scattered(x.cpu, s, dtype); };
      auto empty = [&] {
        return scattered_view(Tensor::empty({s.heads, s.seq_len, s.batch, s.head_dim + kScatterPad}, dtype, kGpu), s);
      };
      return {scattered(in.q),
              scattered(in.k),
              scattered(in.v),
              scattered(in.d_out),
              {empty(), lse, empty(), empty(), empty()}};
    }
  }
  FAIL("unknown layout");
  return {};
}

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

// ---- The packed-qkv op through autograd ---------------------------------------------------------

// attention_packed_qkv on a fresh leaf with qkv's values: its output ([B, T, C]), the gradient of
// qkv for the loss sum(out * upstream), and the op of the node that made the output.
struct PackedRun {
  Tensor out, d_qkv;
  std::string op;
};

inline PackedRun run_packed_qkv(const Tensor& qkv, const Tensor& upstream, int64_t heads, AttentionOptions options,
                                AttentionKernel kernel) {
  const Tensor x = leaf(qkv, qkv.dtype(), qkv.device());
  options.kernel = kernel;
  const Tensor out = attention_packed_qkv(x, heads, options);
  REQUIRE(out.grad_fn());
  const std::string op = out.grad_fn()->op;
  weighted_sum(out, upstream).backward();
  return {out.detach(), x.grad(), op};
}

// A fused kernel's packed run against math's: one node that took qkv and gave [B, T, C], a
// contiguous out and gradient (written whole, not gathered), and both within `dtype`'s bound of
// math's (each is within it of the f64 truth; they round P and dS at different points, so they
// are held to each other with the same bound).
inline void check_packed_against_math(const PackedRun& fused, const PackedRun& math, DType dtype) {
  CHECK(fused.op == "attention_packed_qkv");
  CHECK(fused.out.is_contiguous());
  REQUIRE(fused.d_qkv.defined());
  CHECK(fused.d_qkv.is_contiguous());
  CAPTURE("out");
  CHECK(gpu_error(fused.out, math.out) < tolerance(dtype));
  CAPTURE("d_qkv");
  CHECK(gpu_error(fused.d_qkv, math.d_qkv) < tolerance(dtype));
}

}  // namespace ft::testing
