// flash attention's CUDA kernels, called on raw pointers, against attention_cpu.h in f64 from the
// same rounded inputs: out, lse, dq, dk, dv in bf16 and f16, head dims 64 and 128, causal and
// bidirectional, sequence lengths on and off the 64-row tiles (1 to 1024), GPT-2's 16 x 12 heads
// at T = 1024, packed documents and padding (padding rows exactly zero with lse +inf, and a
// packed document gives what it gives run alone), the backward's bits run to run, and the
// launchers' errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/cuda/context.h"
#include "kernels/attention/attention_cpu.h"
#include "kernels/flash_attention/flash_attention_cuda.h"
#include "tests/gpu/op_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

constexpr DType kFlashDTypes[] = {DType::bf16, DType::f16};
constexpr double kInf = std::numeric_limits<double>::infinity();

// lse is fp32 arithmetic on exact products of the rounded inputs (nothing is rounded to 16 bits
// on its way): sums of up to 1024 exponentials and a log, ~1e-6 of values near log T, times a
// margin.
constexpr double kLseBound = 1e-4;
// The worst element (relative to the largest reference value) may be off by a few roundings of
// the largest; the norm-wise error is held to the dtype's table bound.
constexpr double kWorstFactor = 5;

struct Problem {
  kernels::AttentionShape shape;
  bool causal;
  std::vector<int32_t> segments;  // [batch, seq_len], or empty: none
};

float default_scale(const kernels::AttentionShape& s) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
}

Shape qkv_shape(const kernels::AttentionShape& s) { return {s.batch, s.heads, s.seq_len, s.head_dim}; }
Shape row_shape(const kernels::AttentionShape& s) { return {s.batch, s.heads, s.seq_len}; }

struct Inputs {
  Twin q, k, v, d_out;
};

Inputs random_inputs(const kernels::AttentionShape& s, DType dtype, uint64_t seed) {
  const Shape shape = qkv_shape(s);
  return {random_twin(shape, dtype, seed), random_twin(shape, dtype, seed + 1), random_twin(shape, dtype, seed + 2),
          random_twin(shape, dtype, seed + 3)};
}

struct Results {
  Tensor out, lse, dq, dk, dv;
};

// The forward, then the backward from d_out, on the GPU (poisoned outputs).
Results run_gpu(const Problem& p, const Inputs& in, DType dtype) {
  const kernels::AttentionShape& s = p.shape;
  Results r{Tensor::empty(qkv_shape(s), dtype, kGpu), Tensor::empty(row_shape(s), DType::f32, kGpu),
            Tensor::empty(qkv_shape(s), dtype, kGpu), Tensor::empty(qkv_shape(s), dtype, kGpu),
            Tensor::empty(qkv_shape(s), dtype, kGpu)};
  const Tensor delta = Tensor::empty(row_shape(s), DType::f32, kGpu);
  const Tensor segments = p.segments.empty() ? Tensor() : Tensor::from_ints(p.segments, {s.batch, s.seq_len}, kGpu);
  const kernels::AttentionMask mask{p.causal, segments.defined() ? segments.data<int32_t>() : nullptr};
  const float scale = default_scale(s);
  cudaStream_t stream = cuda::context(0).stream;
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    kernels::flash_attention_forward_cuda<T>(s, mask, scale, in.q.gpu.data<T>(), in.k.gpu.data<T>(), in.v.gpu.data<T>(),
                                             r.out.data<T>(), r.lse.data<float>(), stream);
    kernels::flash_attention_backward_cuda<T>(s, mask, scale, in.q.gpu.data<T>(), in.k.gpu.data<T>(),
                                              in.v.gpu.data<T>(), r.out.data<T>(), in.d_out.gpu.data<T>(),
                                              r.lse.data<float>(), delta.data<float>(), r.dq.data<T>(), r.dk.data<T>(),
                                              r.dv.data<T>(), stream);
  };
  if (dtype == DType::bf16)
    launch(ft::bfloat16{});
  else
    launch(ft::half{});
  return r;
}

// The reference in f64 from the same values. lse comes from the f64 scores and probabilities:
// p_ij = exp(s_ij - lse_i) for every key j that query i sees, so lse_i = s_ij - log p_ij, taken
// at the row's most probable key (the most accurate); +inf where the query sees no key.
Results run_cpu(const Problem& p, const Inputs& in) {
  const kernels::AttentionShape& s = p.shape;
  const int64_t t = s.seq_len, d = s.head_dim;
  Results r{Tensor::empty(qkv_shape(s), DType::f64), Tensor::empty(row_shape(s), DType::f64),
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

double largest_magnitude(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::abs(v));
  return m;
}

// got against its reference: finite everywhere, norm-wise within `bound`, the worst element
// within kWorstFactor * bound. Where the reference is all zeros (dq and dk at T = 1: one key, so
// the softmax has nothing to move) a relative error means nothing, and got must instead be small
// next to its O(1) inputs.
void check_result(const char* what, const Tensor& got, const Tensor& expected, double bound) {
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
void check_lse(const Tensor& got, const Tensor& expected) {
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

Results check_against_cpu(const Problem& p, DType dtype, uint64_t seed) {
  const Inputs in = random_inputs(p.shape, dtype, seed);
  const Results gpu = run_gpu(p, in, dtype), cpu = run_cpu(p, in);
  const double bound = tolerance(dtype);
  check_result("out", gpu.out, cpu.out, bound);
  check_lse(gpu.lse, cpu.lse);
  check_result("dq", gpu.dq, cpu.dq, bound);
  check_result("dk", gpu.dk, cpu.dk, bound);
  check_result("dv", gpu.dv, cpu.dv, bound);
  return gpu;
}

// A document of a packed batch row: positions [start, end) of row `batch`.
struct Document {
  int64_t batch, start, end;
};

// Two rows of 1024: documents of 300, 1, 500 and 223 tokens; documents of 700 and 24 tokens and
// 300 of padding (id -1). Boundaries fall inside tiles; one document is a single token.
constexpr int64_t kPackedLength = 1024;
const std::vector<Document> kDocuments = {{0, 0, 300},    {0, 300, 301}, {0, 301, 801},
                                          {0, 801, 1024}, {1, 0, 700},   {1, 700, 724}};
constexpr int64_t kPaddingStart = 724;  // of row 1

std::vector<int32_t> packed_segment_ids() {
  std::vector<int32_t> ids(2 * kPackedLength, -1);  // padding unless a document covers it
  for (size_t i = 0; i < kDocuments.size(); ++i)    // document i has id i
    for (int64_t p = kDocuments[i].start; p < kDocuments[i].end; ++p)
      ids[kDocuments[i].batch * kPackedLength + p] = static_cast<int32_t>(i);
  return ids;
}

// Positions [doc.start, doc.end) of row doc.batch of a [B, H, T, ...] tensor, on the host in f64.
Tensor document_part(const Tensor& x, const Document& doc) {
  return slice(slice(host_f64(x), 0, doc.batch, doc.batch + 1), 2, doc.start, doc.end).contiguous();
}

}  // namespace

TEST_CASE("flash attention against the f64 reference: head dims 64 and 128, causal or not, on and off the tiles") {
  cuda::set_poison_allocations(true);
  uint64_t seed = 1;
  for (DType dtype : kFlashDTypes)
    for (int64_t head_dim : {64, 128})
      for (bool causal : {true, false})
        for (int64_t seq_len : {1, 17, 64, 100, 128, 1000, 1024}) {
          CAPTURE(dtype_text(dtype));
          CAPTURE(head_dim);
          CAPTURE(causal);
          CAPTURE(seq_len);
          check_against_cpu({{2, 3, seq_len, head_dim}, causal, {}}, dtype, seed += 4);
        }
}

TEST_CASE("flash attention at GPT-2's shape: 16 x 12 heads of 64 at T = 1024, causal") {
  cuda::set_poison_allocations(true);
  check_against_cpu({{16, 12, 1024, 64}, true, {}}, DType::bf16, 500);
}

TEST_CASE("flash attention with packed documents and padding: padding is exactly zero with lse +inf") {
  cuda::set_poison_allocations(true);
  const std::vector<int32_t> ids = packed_segment_ids();
  uint64_t seed = 1000;
  for (DType dtype : kFlashDTypes)
    for (int64_t head_dim : {64, 128})
      for (bool causal : {true, false}) {
        CAPTURE(dtype_text(dtype));
        CAPTURE(head_dim);
        CAPTURE(causal);
        const Results gpu = check_against_cpu({{2, 3, kPackedLength, head_dim}, causal, ids}, dtype, seed += 4);
        const Document padding{1, kPaddingStart, kPackedLength};
        for (const Tensor& t : {gpu.out, gpu.dq, gpu.dk, gpu.dv})
          CHECK(largest_magnitude(document_part(t, padding)) == 0);
        for (double lse : document_part(gpu.lse, padding).to_double_vector()) CHECK(lse == kInf);
      }
}

TEST_CASE("flash attention: a packed document gives what it gives alone") {
  cuda::set_poison_allocations(true);
  const DType dtype = DType::bf16;
  const int64_t heads = 3;
  for (int64_t head_dim : {64, 128})
    for (bool causal : {true, false}) {
      CAPTURE(head_dim);
      CAPTURE(causal);
      const Problem packed{{2, heads, kPackedLength, head_dim}, causal, packed_segment_ids()};
      const Inputs in = random_inputs(packed.shape, dtype, 2000 + head_dim);
      const Results together = run_gpu(packed, in, dtype);
      for (const Document& doc : kDocuments) {
        CAPTURE(doc.start);
        CAPTURE(doc.end);
        auto part = [&](const Twin& x) {
          const Tensor values = document_part(x.cpu, doc);
          return Twin{values.to(dtype).to(kGpu), values};
        };
        const Inputs alone_in{part(in.q), part(in.k), part(in.v), part(in.d_out)};
        const Results alone = run_gpu({{1, heads, doc.end - doc.start, head_dim}, causal, {}}, alone_in, dtype);
        // Not bit for bit: the document's rows fall on other tile boundaries when alone, so the
        // online softmax adds in another order; within the dtype's bound of each other.
        const double bound = tolerance(dtype);
        check_result("out", alone.out, document_part(together.out, doc), bound);
        check_lse(alone.lse, document_part(together.lse, doc));
        check_result("dv", alone.dv, document_part(together.dv, doc), bound);
        if (doc.end - doc.start > 1) {  // a single token's dq and dk are zero: rounding noise on both sides
          check_result("dq", alone.dq, document_part(together.dq, doc), bound);
          check_result("dk", alone.dk, document_part(together.dk, doc), bound);
        }
      }
    }
}

TEST_CASE("flash attention: the backward gives the same bits on every run") {
  cuda::set_poison_allocations(true);
  for (int64_t head_dim : {64, 128})
    for (const Problem& p : {Problem{{2, 3, 1000, head_dim}, true, {}},
                             Problem{{2, 3, kPackedLength, head_dim}, false, packed_segment_ids()}}) {
      CAPTURE(head_dim);
      CAPTURE(p.causal);
      const Inputs in = random_inputs(p.shape, DType::bf16, 3000 + head_dim);
      const Results first = run_gpu(p, in, DType::bf16), second = run_gpu(p, in, DType::bf16);
      CHECK(first.dq.to_double_vector() == second.dq.to_double_vector());
      CHECK(first.dk.to_double_vector() == second.dk.to_double_vector());
      CHECK(first.dv.to_double_vector() == second.dv.to_double_vector());
      CHECK(first.out.to_double_vector() == second.out.to_double_vector());
    }
}

TEST_CASE("flash attention launchers reject other head dims and misaligned data") {
  const kernels::AttentionMask mask{true, nullptr};
  Tensor x = Tensor::empty({1, 1, 8, 64}, DType::bf16, kGpu);
  Tensor lse = Tensor::empty({1, 1, 8}, DType::f32, kGpu);
  const ft::bfloat16* p = x.data<ft::bfloat16>();
  ft::bfloat16* out = x.data<ft::bfloat16>();
  CHECK_THROWS_WITH(kernels::flash_attention_forward_cuda<ft::bfloat16>({1, 1, 8, 32}, mask, 1.0f, p, p, p, out,
                                                                        lse.data<float>(), cuda::context(0).stream),
                    doctest::Contains("flash_attention_forward_cuda: head_dim 32 is not supported (64 or 128)"));
  CHECK_THROWS_WITH(kernels::flash_attention_forward_cuda<ft::bfloat16>({1, 1, 7, 64}, mask, 1.0f, p + 1, p, p, out,
                                                                        lse.data<float>(), cuda::context(0).stream),
                    doctest::Contains("flash_attention_forward_cuda: a tensor's data is not 16-byte aligned"));
}
