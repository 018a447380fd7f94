// flash attention's CUDA kernels, called through their launchers, against attention_cpu.h in f64
// from the same rounded inputs: out, lse, dq, dk, dv in bf16 and f16, head dims 64 and 128,
// causal and bidirectional, sequence lengths on and off the 64-row tiles (1 to 1024), GPT-2's
// 16 x 12 heads at T = 1024, packed documents and padding (padding rows exactly zero with lse
// +inf, and a packed document gives what it gives run alone), operands read and written in
// place through their strides (q, k, v side by side as c_attn leaves them, dq, dk, dv likewise,
// heads-last, and strides unlike any of those), the backward's bits run to run, and the
// launchers' errors. On Hopper each check runs with both of the kernels' instruction sets,
// wgmma and mma.sync (for_each_mma).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "framework/cuda/context.h"
#include "kernels/flash_attention/flash_attention_cuda.h"
#include "tests/gpu/attention_test_support.h"

using namespace ft;
using namespace ft::testing;

namespace {

constexpr DType kFlashDTypes[] = {DType::bf16, DType::f16};

// A tensor as the launchers take it (T const for what they read).
template <class T>
kernels::FlashOperand<T> operand(const Tensor& x) {
  return {x.data<std::remove_const_t<T>>(), strides_of(x)};
}

// The forward, then the backward from d_out, on the GPU, every operand laid out as `layout` says
// (outputs poisoned).
AttentionResults run_gpu(const AttentionProblem& p, const AttentionInputs& in, DType dtype,
                         Layout layout = Layout::packed) {
  const kernels::AttentionShape& s = p.shape;
  const AttentionOperands x = place(in, s, dtype, layout);
  const AttentionResults& r = x.results;
  const Tensor delta = Tensor::empty(row_shape(s), DType::f32, kGpu);
  const Tensor segments = p.segments.empty() ? Tensor() : Tensor::from_ints(p.segments, {s.batch, s.seq_len}, kGpu);
  const kernels::AttentionMask mask{p.causal, segments.defined() ? segments.data<int32_t>() : nullptr};
  const float scale = default_scale(s);
  cudaStream_t stream = cuda::context(0).stream;
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    kernels::flash_attention_forward_cuda<T>(s, mask, scale, operand<const T>(x.q), operand<const T>(x.k),
                                             operand<const T>(x.v), operand<T>(r.out), r.lse.data<float>(), stream);
    kernels::flash_attention_backward_cuda<T>(s, mask, scale, operand<const T>(x.q), operand<const T>(x.k),
                                              operand<const T>(x.v), operand<const T>(r.out), operand<const T>(x.d_out),
                                              r.lse.data<float>(), delta.data<float>(), operand<T>(r.dq),
                                              operand<T>(r.dk), operand<T>(r.dv), stream);
  };
  if (dtype == DType::bf16)
    launch(ft::bfloat16{});
  else
    launch(ft::half{});
  return r;
}

// Calls f() once with each of the kernels' matrix instructions: wgmma (on Hopper; mma.sync
// elsewhere), then mma.sync.
template <class F>
void for_each_mma(F&& f) {
  for (bool wgmma : {true, false}) {
    CAPTURE(wgmma);
    kernels::flash_attention_allow_wgmma(wgmma);
    f();
  }
  kernels::flash_attention_allow_wgmma(true);
}

// The GPU's results (one for each of for_each_mma's choices), each checked against the reference.
std::vector<AttentionResults> check_against_cpu(const AttentionProblem& p, DType dtype, uint64_t seed,
                                                Layout layout = Layout::packed) {
  const AttentionInputs in = random_attention_inputs(p.shape, dtype, seed);
  const AttentionResults reference = reference_attention(p, in);
  std::vector<AttentionResults> results;
  for_each_mma([&] {
    results.push_back(run_gpu(p, in, dtype, layout));
    check_attention_results(results.back(), reference, dtype);
  });
  return results;
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

TEST_CASE("flash attention reads and writes every operand in place through its batch, head and token strides") {
  cuda::set_poison_allocations(true);
  uint64_t seed = 600;
  for (Layout layout : {Layout::heads_last, Layout::packed_qkv, Layout::scattered})
    for (DType dtype : kFlashDTypes)
      for (int64_t head_dim : {64, 128})
        for (bool causal : {true, false})
          for (int64_t seq_len : {17, 1000}) {
            CAPTURE(layout_name(layout));
            CAPTURE(dtype_text(dtype));
            CAPTURE(head_dim);
            CAPTURE(causal);
            CAPTURE(seq_len);
            check_against_cpu({{2, 3, seq_len, head_dim}, causal, {}}, dtype, seed += 4, layout);
          }
}

TEST_CASE(
    "flash attention at GPT-2's shape as attention_packed_qkv lays it out: q, k, v and dq, dk, dv in [B, T, 3C]") {
  cuda::set_poison_allocations(true);
  check_against_cpu({{16, 12, 1024, 64}, true, {}}, DType::bf16, 700, Layout::packed_qkv);
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
        for (Layout layout : {Layout::packed, Layout::packed_qkv}) {
          CAPTURE(layout_name(layout));
          const Document padding{1, kPaddingStart, kPackedLength};
          for (const AttentionResults& gpu :
               check_against_cpu({{2, 3, kPackedLength, head_dim}, causal, ids}, dtype, seed += 4, layout)) {
            for (const Tensor& t : {gpu.out, gpu.dq, gpu.dk, gpu.dv})
              CHECK(largest_magnitude(document_part(t, padding)) == 0);
            for (double lse : document_part(gpu.lse, padding).to_double_vector()) CHECK(lse == kInf);
          }
        }
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
      const AttentionProblem packed{{2, heads, kPackedLength, head_dim}, causal, packed_segment_ids()};
      const AttentionInputs in = random_attention_inputs(packed.shape, dtype, 2000 + head_dim);
      for_each_mma([&] {
        const AttentionResults together = run_gpu(packed, in, dtype);
        for (const Document& doc : kDocuments) {
          CAPTURE(doc.start);
          CAPTURE(doc.end);
          auto part = [&](const Twin& x) {
            const Tensor values = document_part(x.cpu, doc);
            return Twin{values.to(dtype).to(kGpu), values};
          };
          const AttentionInputs alone_in{part(in.q), part(in.k), part(in.v), part(in.d_out)};
          const AttentionResults alone =
              run_gpu({{1, heads, doc.end - doc.start, head_dim}, causal, {}}, alone_in, dtype);
          // Not bit for bit: the document's rows fall on other tile boundaries when alone, so the
          // online softmax adds in another order; within the dtype's bound of each other.
          const double bound = tolerance(dtype);
          check_attention_result("out", alone.out, document_part(together.out, doc), bound);
          check_lse(alone.lse, document_part(together.lse, doc));
          check_attention_result("dv", alone.dv, document_part(together.dv, doc), bound);
          if (doc.end - doc.start > 1) {  // a single token's dq and dk are zero: rounding noise on both sides
            check_attention_result("dq", alone.dq, document_part(together.dq, doc), bound);
            check_attention_result("dk", alone.dk, document_part(together.dk, doc), bound);
          }
        }
      });
    }
}

// Every result of two runs, bit for bit (values in the same [B, H, T, D] order whatever the layout).
void check_same_bits(const AttentionResults& a, const AttentionResults& b) {
  CHECK(a.dq.to_double_vector() == b.dq.to_double_vector());
  CHECK(a.dk.to_double_vector() == b.dk.to_double_vector());
  CHECK(a.dv.to_double_vector() == b.dv.to_double_vector());
  CHECK(a.out.to_double_vector() == b.out.to_double_vector());
  CHECK(a.lse.to_double_vector() == b.lse.to_double_vector());
}

TEST_CASE("flash attention: the backward gives the same bits on every run, and in every layout") {
  cuda::set_poison_allocations(true);
  for (int64_t head_dim : {64, 128})
    for (const AttentionProblem& p : {AttentionProblem{{2, 3, 1000, head_dim}, true, {}},
                                      AttentionProblem{{2, 3, kPackedLength, head_dim}, false, packed_segment_ids()}}) {
      CAPTURE(head_dim);
      CAPTURE(p.causal);
      const AttentionInputs in = random_attention_inputs(p.shape, DType::bf16, 3000 + head_dim);
      for_each_mma([&] {
        const AttentionResults first = run_gpu(p, in, DType::bf16);
        check_same_bits(first, run_gpu(p, in, DType::bf16));
        // The strides move where values are read and written, not the arithmetic.
        for (Layout layout : {Layout::heads_last, Layout::packed_qkv, Layout::scattered}) {
          CAPTURE(layout_name(layout));
          const AttentionResults strided = run_gpu(p, in, DType::bf16, layout);
          check_same_bits(first, strided);
          check_same_bits(strided, run_gpu(p, in, DType::bf16, layout));
        }
      });
    }
}

TEST_CASE(
    "flash attention launchers reject other head dims, a scale that is not positive, and operands they cannot read in "
    "place") {
  using Operand = kernels::FlashOperand<const ft::bfloat16>;
  const kernels::AttentionMask mask{true, nullptr};
  const kernels::AttentionShape shape{1, 1, 8, 64};
  const kernels::AttentionStrides packed = kernels::packed_attention_strides(shape);
  const Tensor x = Tensor::empty(qkv_shape(shape), DType::bf16, kGpu);
  const Tensor lse = Tensor::empty(row_shape(shape), DType::f32, kGpu),
               delta = Tensor::empty(row_shape(shape), DType::f32, kGpu);
  const ft::bfloat16* p = x.data<ft::bfloat16>();
  const Operand in{p, packed};
  const kernels::FlashOperand<ft::bfloat16> out{x.data<ft::bfloat16>(), packed};
  auto forward = [&](const kernels::AttentionShape& s, const Operand& q, const Operand& k, const Operand& v) {
    kernels::flash_attention_forward_cuda<ft::bfloat16>(s, mask, 1.0f, q, k, v, out, lse.data<float>(),
                                                        cuda::context(0).stream);
  };
  CHECK_THROWS_WITH(forward({1, 1, 8, 32}, in, in, in),
                    doctest::Contains("flash_attention_forward_cuda: head_dim 32 is not supported (64 or 128)"));
  CHECK_THROWS_WITH(kernels::flash_attention_forward_cuda<ft::bfloat16>(shape, mask, -1.0f, in, in, in, out,
                                                                        lse.data<float>(), cuda::context(0).stream),
                    doctest::Contains("flash_attention_forward_cuda: scale -1 is not a positive number"));
  CHECK_THROWS_WITH(forward(shape, Operand{p + 1, packed}, in, in),
                    doctest::Contains("flash_attention_forward_cuda: q needs unit stride along head_dim, other strides "
                                      "positive multiples of 8 elements and 16-byte aligned data, got strides [512, "
                                      "512, 64, 1]"));
  CHECK_THROWS_WITH(forward(shape, in, Operand{p, {8 * 65, 8 * 65, 65, 1}}, in),
                    doctest::Contains("flash_attention_forward_cuda: k needs unit stride"));
  CHECK_THROWS_WITH(forward(shape, in, in, Operand{p, {1024, 1024, 128, 2}}),
                    doctest::Contains("flash_attention_forward_cuda: v needs unit stride"));
  CHECK_THROWS_WITH(forward(shape, in, in, Operand{p, {0, 512, 64, 1}}),
                    doctest::Contains("flash_attention_forward_cuda: v needs unit stride"));
  const kernels::FlashOperand<ft::bfloat16> misaligned{x.data<ft::bfloat16>() + 8 * 64 - 4, packed};
  CHECK_THROWS_WITH(kernels::flash_attention_backward_cuda<ft::bfloat16>(shape, mask, 1.0f, in, in, in, in, in,
                                                                         lse.data<float>(), delta.data<float>(), out,
                                                                         out, misaligned, cuda::context(0).stream),
                    doctest::Contains("flash_attention_backward_cuda: dv needs unit stride"));
}
